"""What a suite run records about where it ran (run.json's ``environment``), and how many
notebooks it runs at once by default.

:func:`environment` is one flat dict with snake_case keys, in this order: ``git_commit``,
``git_dirty`` (of the checkout; both None outside git), ``offsetlab``, ``kafka_python``,
``pandas``, ``papermill`` (installed versions), ``kafka`` (the version of the broker the run
used; None until one started), ``java`` (``java -version``), ``node`` (``node --version``),
``python``, ``cores``, ``memory_gb`` and ``jobs`` (the slots the run used). A tool that is
absent is None, never an error.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["environment", "versions", "default_jobs", "cores", "memory_gb", "command",
           "SLOT_MEMORY_GB", "RESERVED_MEMORY_GB"]

#: runs a command: (exit status, stdout, stderr), or None when it cannot run (not installed)
Command = Callable[[Sequence[str]], "tuple[int, str, str] | None"]

#: peak memory of one slot: its Kafka JVM (-Xmx768m), a kernel with pandas and matplotlib
#: (~250 MB) and a notebook's dedicated Kafka (another JVM); measured peaks are below this
SLOT_MEMORY_GB = 2.0
#: left to the system, the runner and the tools the user has open
RESERVED_MEMORY_GB = 2.0


def command(cmd: Sequence[str], timeout_s: float = 20.0) -> tuple[int, str, str] | None:
    """Run ``cmd``; None when it is not installed, cannot start or does not finish."""
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout_s,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.returncode, out.stdout, out.stderr


def versions() -> dict[str, str]:
    """Versions that shape the results: offsetlab, kafka-python, papermill, pandas, Python
    (the older ``versions`` key of run.json and bench.json; :func:`environment` has them too)."""
    import offsetlab

    out = {"offsetlab": getattr(offsetlab, "__version__", "unknown"),
           "python": platform.python_version()}
    for dist in ("kafka-python", "papermill", "pandas"):
        out[dist] = _dist_version(dist) or "not installed"
    return out


def _dist_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cores() -> int:
    """CPUs this process may use (the affinity mask where there is one)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_gb() -> float | None:
    """Physical memory in GiB (one decimal), None where the OS does not say."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return round(total / 2**30, 1) if total > 0 else None


def default_jobs(n_cores: int | None = None, mem_gb: float | None = None) -> int:
    """How many notebooks ``offsetlab run`` runs at once when ``-j`` is not given.

    The rule: one slot per core, at least 2, and no more slots than fit in memory at
    ``SLOT_MEMORY_GB`` each after ``RESERVED_MEMORY_GB`` (at least 1 slot). The notebooks
    wait more than they compute (group joins, session timeouts, outages they sit through), so
    even one core has room for a second notebook. More slots than cores finished sooner on the
    2-core machine it was measured on (full fast profile: -j 1 265 s, -j 2 142 s, -j 3 104 s,
    -j 4 86 s) but changed a finding: E02's runner, under that load, had already crashed 1 s
    after its broker stopped (README, "Running the notebooks"). A default must find what a
    serial run finds, so: 2 there."""
    n_cores = cores() if n_cores is None else n_cores
    mem_gb = memory_gb() if mem_gb is None else mem_gb
    jobs = max(2, n_cores)
    if mem_gb is not None:
        jobs = min(jobs, max(1, int((mem_gb - RESERVED_MEMORY_GB) // SLOT_MEMORY_GB)))
    return jobs


def _git(root: Path, run: Command) -> tuple[str | None, bool | None]:
    head = run(["git", "-C", str(root), "rev-parse", "HEAD"])
    if head is None or head[0] != 0 or not head[1].strip():
        return None, None
    status = run(["git", "-C", str(root), "status", "--porcelain"])
    dirty = None if status is None or status[0] != 0 else bool(status[1].strip())
    return head[1].strip(), dirty


def _java(run: Command) -> str | None:
    home = os.environ.get("JAVA_HOME")
    out = run([str(Path(home) / "bin" / "java") if home else "java", "-version"])
    if out is None or out[0] != 0:
        return None
    text = (out[2] or out[1]).strip()  # java -version writes to stderr
    m = re.search(r'version "([^"]+)"', text)
    return m.group(1) if m else (text.splitlines()[0] if text else None)


def _node(run: Command) -> str | None:
    out = run(["node", "--version"])
    if out is None or out[0] != 0 or not out[1].strip():
        return None
    return out[1].strip().removeprefix("v")


def environment(jobs: int, *, kafka: str | None = None, root: Path | None = None,
                run: Command = command, n_cores: int | None = None,
                mem_gb: float | None = None) -> dict[str, Any]:
    """run.json's ``environment`` (see the module docstring). ``root`` is the checkout
    (default: this package's); ``run`` runs git, java and node (a fake in tests)."""
    import offsetlab

    from .paths import repo_root

    commit, dirty = _git(root or repo_root(), run)
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "offsetlab": getattr(offsetlab, "__version__", None) or _dist_version("offsetlab"),
        "kafka_python": _dist_version("kafka-python"),
        "pandas": _dist_version("pandas"),
        "papermill": _dist_version("papermill"),
        "kafka": kafka,
        "java": _java(run),
        "node": _node(run),
        "python": platform.python_version(),
        "cores": cores() if n_cores is None else n_cores,
        "memory_gb": memory_gb() if mem_gb is None else mem_gb,
        "jobs": jobs,
    }
