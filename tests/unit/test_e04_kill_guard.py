"""E04's kill case without a broker: the worker dies with its parent (death signal, parent
watch), and the orchestrator's wait for the ``processed`` line has a deadline even when the
worker is silent (or chatty), kills the worker and names its stderr log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from offsetlab.lab.experiments import e04_kill, e04_kill_worker

# a stand-in worker: the real worker's guard (or a part of it), then "ready", then it blocks
_PARTS = {
    "guard": "w.guard()",
    "death signal only": "assert w.set_pdeathsig()",
    "parent watch only": "w.set_pdeathsig = lambda *a: False; w.guard()",
}
_STAND_IN = ("import sys, time; import offsetlab.lab.experiments.e04_kill_worker as w; {part}; "
             "print('ready', flush=True); time.sleep(60)")
# the short-lived parent: starts the stand-in (stdin inherited: the test holds that pipe open,
# so stdin EOF is not what ends it; stdout a pipe to this parent, as in run_kill; stderr a
# file), waits for "ready", prints its pid, exits at once (the stand-in's stdout pipe breaks)
_PARENT = ("import os, subprocess, sys; "
           "p = subprocess.Popen([sys.executable, '-c', sys.argv[1]], stdout=subprocess.PIPE, "
           "stderr=open(sys.argv[2], 'ab')); "
           "assert p.stdout.readline() == b'ready\\n'; "
           "print(p.pid, flush=True); os._exit(0)")


def _alive(pid: int) -> bool:
    """Running (not gone and not a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def held_stdin() -> Iterator[int]:
    """The read end of a pipe whose write end stays open for the whole test."""
    r, w = os.pipe()
    yield r
    os.close(r)
    os.close(w)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG, /proc: Linux")
@pytest.mark.parametrize("part", list(_PARTS))
def test_the_worker_dies_with_its_parent(part: str, held_stdin: int, tmp_path: Path) -> None:
    err = tmp_path / "stand-in.log"
    parent = subprocess.run([sys.executable, "-c", _PARENT, _STAND_IN.format(part=_PARTS[part]),
                             str(err)], stdin=held_stdin, capture_output=True, text=True,
                            timeout=30)
    assert parent.returncode == 0, parent.stderr
    pid = int(parent.stdout.split()[0])
    try:
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid), f"{part}: the worker outlived its parent; stderr: {err.read_text()}"
        assert "Traceback" not in err.read_text()
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_worker_whose_parent_is_already_gone_exits_at_once() -> None:
    code = ("import time; import offsetlab.lab.experiments.e04_kill_worker as w; "
            f"w.guard(parent_pid={os.getpid() + 1_000_000}); time.sleep(60)")
    r = subprocess.run([sys.executable, "-c", code], stdin=subprocess.PIPE, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == e04_kill_worker.ORPHANED
    assert "orchestrator gone" in r.stdout


def test_the_worker_guards_itself_before_anything_else(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    class Guarded(Exception):
        pass

    def guard(parent_pid: int | None = None) -> None:
        raise Guarded(parent_pid)

    monkeypatch.setattr(e04_kill_worker, "guard", guard)
    with pytest.raises(Guarded) as got:
        e04_kill_worker.main(["--bootstrap-servers", "127.0.0.1:1", "--topic", "t", "--group", "g",
                              "--out", str(tmp_path / "out.txt"), "--mode", "offset", "--end", "5",
                              "--parent-pid", "4242"])
    assert got.value.args == (4242,)
    assert not (tmp_path / "out.txt").exists()


def test_the_worker_command_names_the_orchestrator() -> None:
    class Broker:
        bootstrap_servers = "h:1"

    cmd = e04_kill._worker_cmd(Broker(), "t", "g", "offset", Path("o"), 5, 2, 3.0)  # type: ignore[arg-type]
    assert cmd[cmd.index("--parent-pid") + 1] == str(os.getpid())


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[str]]:
    procs: list[subprocess.Popen[str]] = []
    real = e04_kill._spawn

    def spawn(*args: object, **kwargs: object) -> subprocess.Popen[str]:
        proc = real(*args, **kwargs)  # type: ignore[arg-type]
        procs.append(proc)
        return proc

    monkeypatch.setattr(e04_kill, "_spawn", spawn)
    return procs


def _kill_at(code: str, log: Path, timeout_s: float = 1.0) -> int | None:
    return e04_kill._kill_at([sys.executable, "-c", code], log, style="offset+1", kill_after=3,
                             timeout_s=timeout_s)


@pytest.mark.parametrize("code", [
    "import time; time.sleep(60)",  # alive and silent
    "import time\nwhile True: print('polling', flush=True); time.sleep(0.05)",  # never the line
], ids=["silent", "chatty"])
def test_the_wait_for_the_kill_point_times_out_and_kills_the_worker(
        code: str, tmp_path: Path, spawned: list[subprocess.Popen[str]]) -> None:
    log = tmp_path / "w.log"
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as got:
        _kill_at("import sys; print('about to hang', file=sys.stderr, flush=True)\n" + code, log)
    assert time.monotonic() - t0 < 5
    text = str(got.value)
    assert "offset+1" in text and "timeout_s=1 s" in text and str(log) in text
    assert "about to hang" in text  # the log's tail
    (proc,) = spawned
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdin is not None and proc.stdin.closed


def test_a_worker_that_exits_early_is_reported_with_its_log(
        tmp_path: Path, spawned: list[subprocess.Popen[str]]) -> None:
    log = tmp_path / "w.log"
    with pytest.raises(RuntimeError) as got:
        _kill_at("import sys; sys.exit('kafka said no')", log, timeout_s=10)
    text = str(got.value)
    assert "exit status 1" in text and str(log) in text and "kafka said no" in text
    assert spawned[0].returncode == 1


def test_the_worker_is_killed_at_the_kill_point(tmp_path: Path,
                                                spawned: list[subprocess.Popen[str]]) -> None:
    code = ("import time; print('joined', flush=True); print('processed 2', flush=True); "
            "time.sleep(60)")
    assert _kill_at(code, tmp_path / "w.log", timeout_s=10) == -signal.SIGKILL
    assert spawned[0].returncode == -signal.SIGKILL
