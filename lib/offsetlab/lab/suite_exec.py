"""Executing one notebook with papermill, safely from several threads at once.

:class:`PapermillExecutor` is the suite runner's default executor. Four things differ from a
plain ``papermill.execute_notebook(source, output, parameters=...)``:

* **The parameters are injected before papermill runs** (papermill's own
  ``parameterize_notebook``, written to the output path, then executed with
  ``parameters=None``). Given parameters, papermill first *inspects* the notebook's
  parameters cell only to warn about unknown names: ``PythonTranslator.inspect`` skips every
  line with more than one ``=`` (it counts them in the trailing comment too, e.g.
  ``commit_timeout_ms = 1000  # commit(timeout_ms=...)``) and logs "Unable to parse line N".
  The runner checks parameter names itself beforehand, with an AST parse that reads
  comments as comments (``offsetlab.lab.profiles``), so the inspection adds nothing here.
* **The kernel talks to us over IPC** (Unix sockets in Jupyter's private runtime folder)
  instead of TCP on 127.0.0.1: ipykernel >= 7 warns on stderr, from inside the kernel process,
  that it "is running over TCP without encryption", and a kernel that only ever talks to the
  process that started it needs no TCP ports (none to race for when notebooks start at once).
* **No SIGINT before a normal shutdown**: jupyter_client interrupts a kernel before asking it
  to shut down, which can land in the kernel's last reply and print "KeyboardInterrupt
  caught in kernel." on the terminal.
* **No process-wide ``chdir``**: papermill's ``cwd=`` changes the working directory of the
  whole process for the run, which several threads would undo for each other; the kernel's
  working directory is set through nbclient's ``resources`` instead.

The executor keeps the kernels it started, so :meth:`PapermillExecutor.interrupt` (SIGINT,
like Jupyter's interrupt button: the running cell raises KeyboardInterrupt and its ``with``
blocks stop their brokers) and :meth:`PapermillExecutor.kill` (SIGKILL to the kernel's
process group; the kernel's brokers stop through their guard) can stop a run from another
thread. Once interrupted it starts no further kernel.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["PapermillExecutor", "KERNEL_NAME"]

KERNEL_NAME = "python3"
#: a Unix socket path longer than this does not fit sockaddr_un (108 bytes with the suffix)
_MAX_IPC_PREFIX = 90


class RunInterrupted(RuntimeError):
    """Raised instead of starting a kernel once the run was interrupted."""


class PapermillExecutor:
    """Runs one notebook with papermill (see the module docstring); one per suite run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kernels: set[Any] = set()  # kernel managers whose kernel is (or was) started
        self._stopping = False

    # -- running --------------------------------------------------------------------------
    def __call__(self, source: Path, output: Path, parameters: Mapping[str, Any], *,
                 cwd: Path, cell_timeout_s: float | None) -> None:
        """Execute ``source`` into ``output``; raises papermill's ``PapermillExecutionError``
        when a cell raised."""
        import papermill
        from papermill.iorw import load_notebook_node
        from papermill.parameterize import parameterize_notebook

        if self._stopping:
            raise RunInterrupted("the run was interrupted before this notebook started")
        nb = load_notebook_node(str(source))
        if parameters:
            nb = parameterize_notebook(nb, dict(parameters), kernel_name=KERNEL_NAME)
        _write(nb, output)
        mine: list[Any] = []
        try:
            papermill.execute_notebook(
                str(output), str(output), parameters=None, kernel_name=KERNEL_NAME,
                progress_bar=False, request_save_on_cell_execute=True,
                execution_timeout=cell_timeout_s,
                # passed through papermill's engine to nbclient's NotebookClient
                kernel_manager_class=self._manager_class(mine),
                resources={"metadata": {"path": str(cwd)}})
        finally:
            with self._lock:
                self._kernels.difference_update(mine)
            _restore_input_path(output, source)

    def _manager_class(self, mine: list[Any]) -> type:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.paths import jupyter_runtime_dir

        executor = self

        class SuiteKernelManager(AsyncKernelManager):  # type: ignore[misc]
            """AsyncKernelManager over IPC, registered with the executor once started."""

            def __init__(self, **kw: Any) -> None:
                super().__init__(**kw)
                prefix = Path(jupyter_runtime_dir()) / f"offsetlab-{uuid.uuid4().hex[:12]}-ipc"
                if os.name == "posix" and len(str(prefix)) <= _MAX_IPC_PREFIX:
                    prefix.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    self.transport = "ipc"
                    self.ip = str(prefix)  # sockets <prefix>-<n>, removed by cleanup_resources

            async def _async_interrupt_kernel(self) -> None:
                # jupyter_client's shutdown_kernel() SIGINTs the kernel before asking it to
                # shut down; when the notebook has finished, that only races the kernel's
                # last reply ("[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel." on
                # the terminal, about one run in six). A kernel still busy when asked to
                # shut down is killed after shutdown_wait_time; the runner's own interrupt
                # signals kernels directly (PapermillExecutor.interrupt).
                if not self.shutting_down:
                    await super()._async_interrupt_kernel()

            async def start_kernel(self, **kw: Any) -> None:
                if executor._stopping:
                    raise RunInterrupted("the run was interrupted: no new kernel")
                await super().start_kernel(**kw)
                with executor._lock:
                    mine.append(self)
                    executor._kernels.add(self)
                    stopping = executor._stopping
                if stopping:  # interrupted while this kernel started
                    executor._signal(self, signal.SIGKILL)

        return SuiteKernelManager

    # -- stopping -------------------------------------------------------------------------
    def interrupt(self) -> int:
        """Refuse new kernels and SIGINT the running ones; returns how many were signalled."""
        with self._lock:
            self._stopping = True
            kernels = list(self._kernels)
        return sum(self._signal(km, signal.SIGINT) for km in kernels)

    def kill(self) -> int:
        """SIGKILL every kernel still running (and its process group)."""
        with self._lock:
            self._stopping = True
            kernels = list(self._kernels)
        return sum(self._signal(km, signal.SIGKILL) for km in kernels)

    @staticmethod
    def _signal(km: Any, signum: int) -> bool:
        pid = getattr(getattr(km, "provisioner", None), "pid", None)
        if not pid:
            return False
        try:
            if signum == signal.SIGKILL:
                os.killpg(pid, signum)  # the kernel leads its own session (jupyter_client)
            else:
                os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        log.info("sent signal %d to kernel %d", signum, pid)
        return True


def _write(nb: Any, path: Path) -> None:
    import nbformat

    nbformat.write(nb, str(path))


def _restore_input_path(output: Path, source: Path) -> None:
    """papermill records the path it read as ``metadata.papermill.input_path``: the output,
    here; put the source notebook there."""
    import nbformat

    try:
        nb = nbformat.read(str(output), as_version=4)
        pm = nb.metadata.get("papermill")
        if isinstance(pm, dict) and pm.get("input_path") != str(source):
            pm["input_path"] = str(source)
            tmp = output.with_suffix(".ipynb.tmp")
            tmp.write_text(nbformat.writes(nb))
            os.replace(tmp, output)
    except (OSError, ValueError) as exc:
        log.warning("could not set input_path in %s: %s", output, exc)
