"""E04, the kill case: a consumer process SIGKILLed after its handler processed a message and
before that message's commit, and what the restarted consumer processes again.

Per commit style (``offset+1``, ``offset``: raw kafka-python committing after each processed
record; ``runner``: the adapter's runner, which commits once per poll batch), on a fresh
one-partition topic with messages 1..n and a fresh group:

1. a worker process (:mod:`offsetlab.lab.experiments.e04_kill_worker`) consumes; right after
   it recorded message ``kill_after`` as processed (flushed to a file) and before committing
   it, it says so and blocks; the orchestrator SIGKILLs it (no LeaveGroup, no commit);
2. the committed position is read back from the broker;
3. a second worker of the same style and group (the restart, no kill) consumes to the end.

:class:`KillCase` holds what each process recorded as processed; the re-processed messages
are those both processed. Every worker is killed and reaped on every exit path
(``finally``), and a worker exits by itself when this process dies (see
:mod:`~offsetlab.lab.experiments.e04_kill_worker`). The orchestrator reads the killed worker's
stdout with a timeout (a reader thread feeding a queue), so a worker that stays alive and
silent costs ``timeout_s``, not more. Each worker's stderr (and the restart's stdout) goes to
``<folder>/<group>-killed.log`` / ``<group>-restart.log``; errors name that file.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.raw import committed_offsets, create_topic, produce, unique

__all__ = ["KillCase", "run_kill", "STYLES"]

STYLES = ("offset+1", "offset", "runner")


@dataclass
class KillCase:
    style: str
    n_messages: int
    kill_after: int                       # the message (1-based) processed before the kill
    killed_processed: list[int] = field(default_factory=list)    # messages, in order
    committed_at_kill: int | None = None  # the group's position after the kill (next offset)
    restart_processed: list[int] = field(default_factory=list)
    killed_exit: int | None = None        # the killed worker's exit status (-9: SIGKILL)
    restart_exit: int | None = None

    def reprocessed(self) -> list[int]:
        """Messages processed by the killed consumer and again by the restarted one."""
        return sorted(set(self.killed_processed) & set(self.restart_processed))

    def lost(self) -> list[int]:
        return sorted(set(range(1, self.n_messages + 1)) - set(self.killed_processed)
                      - set(self.restart_processed))

    def row(self) -> dict[str, Any]:
        return {"style": self.style, "killed after message": self.kill_after,
                "killed worker processed": self.killed_processed,
                "committed at the kill (message it resumes at)":
                    None if self.committed_at_kill is None else self.committed_at_kill + 1,
                "restart processed": self.restart_processed,
                "re-processed": self.reprocessed(), "lost": self.lost(),
                "killed exit status": self.killed_exit}


def _worker_cmd(broker: BrokerHandle, topic: str, group: str, style: str, out: Path, end: int,
                kill_after: int, timeout_s: float) -> list[str]:
    return [sys.executable, "-m", "offsetlab.lab.experiments.e04_kill_worker",
            "--bootstrap-servers", broker.bootstrap_servers, "--topic", topic, "--group", group,
            "--out", str(out), "--mode", style, "--end", str(end), "--kill-after", str(kill_after),
            "--timeout-s", str(timeout_s), "--parent-pid", str(os.getpid())]


def _spawn(cmd: Sequence[str], log: Path, *, read_stdout: bool) -> subprocess.Popen[str]:
    """Start ``cmd`` with its stdin a pipe held here (the worker exits at its EOF), its stderr
    appended to ``log`` and its stdout a pipe (``read_stdout``) or ``log`` too."""
    with open(log, "ab", buffering=0) as err:  # the child keeps its own descriptor
        return subprocess.Popen(list(cmd), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE if read_stdout else err, stderr=err,
                                text=True)


class _Lines:
    """A reader thread feeding ``pipe``'s lines to a queue, so they can be awaited with a
    timeout; ``None`` in the queue is EOF."""

    def __init__(self, pipe: IO[str]) -> None:
        self._q: queue.Queue[str | None] = queue.Queue()
        self._pipe = pipe
        self.thread = threading.Thread(target=self._read, name="e04-kill-reader", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self._pipe:
                self._q.put(line)
        except (OSError, ValueError):  # the pipe closed under us
            pass
        finally:
            self._q.put(None)

    def wait_for(self, prefix: str, timeout_s: float) -> str | None:
        """The first line starting with ``prefix`` within ``timeout_s`` seconds; None at EOF.
        Raises :class:`TimeoutError` (its text is the caller's to make) when none came."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                raise TimeoutError from None
            if line is None:
                return None
            if line.startswith(prefix):
                return line


def _reap(proc: subprocess.Popen[str], reader: threading.Thread | None = None) -> int | None:
    """SIGKILL ``proc`` if it still runs, wait for it, close its pipes; its exit status.
    (``reader``, a thread reading its stdout, ends at the EOF the kill causes: it is joined
    before stdout is closed, as closing a file another thread reads from can block.)"""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        status: int | None = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL of our own child
        status = None
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    if reader is not None:
        reader.join(timeout=5)
    if proc.stdout is not None and (reader is None or not reader.is_alive()):
        try:
            proc.stdout.close()
        except OSError:
            pass
    return status


def _tail(log: Path, n: int = 5) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()[-n:]
    except OSError:
        return ""
    return ("; its last lines: " + " | ".join(lines)) if lines else ""


def _kill_at(cmd: Sequence[str], log: Path, *, style: str, kill_after: int,
             timeout_s: float) -> int | None:
    """Run the worker ``cmd``, wait (at most ``timeout_s``) for its ``processed`` line,
    SIGKILL it there; its exit status. Raises TimeoutError when the line does not come in
    time (the worker is killed) and RuntimeError when the worker exits without it."""
    proc = _spawn(cmd, log, read_stdout=True)
    assert proc.stdout is not None
    lines = _Lines(proc.stdout)
    try:
        try:
            line = lines.wait_for("processed ", timeout_s)
        except TimeoutError:
            raise TimeoutError(
                f"E04 kill case, mode {style}: the worker did not report message {kill_after} "
                f"processed within timeout_s={timeout_s:g} s; killed it (SIGKILL). "
                f"Its stderr: {log}{_tail(log)}") from None
        if line is None:
            try:
                status = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                status = None
            raise RuntimeError(
                f"E04 kill case, mode {style}: the worker closed its stdout (exit status "
                f"{status}) before reporting message {kill_after} processed. "
                f"Its stderr: {log}{_tail(log)}")
        proc.send_signal(signal.SIGKILL)
    finally:
        status = _reap(proc, lines.thread)  # the SIGKILL above, or the one an error needs
    return status


def _offsets(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def run_kill(broker: BrokerHandle, folder: Path, *, style: str, n_messages: int = 5,
             kill_after: int = 3, timeout_s: float = 45.0) -> KillCase:
    """One style: kill after message ``kill_after`` was processed, then restart (see the
    module docstring). Raises TimeoutError when the worker does not reach the kill point
    within ``timeout_s`` (it is killed) and RuntimeError when it exits before it; both name
    the worker's stderr log in ``folder``."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    case = KillCase(style, n_messages, kill_after)
    topic = create_topic(broker, unique("e04-kill"), 1)
    group = unique(f"e04-kill-{style.replace('+', 'plus')}")
    produce(broker, topic, [(f"k{i}", f"message {i}") for i in range(1, n_messages + 1)])
    folder.mkdir(parents=True, exist_ok=True)
    first, second = folder / f"{group}-killed.txt", folder / f"{group}-restart.txt"
    case.killed_exit = _kill_at(
        _worker_cmd(broker, topic, group, style, first, n_messages, kill_after - 1, timeout_s),
        folder / f"{group}-killed.log", style=style, kill_after=kill_after, timeout_s=timeout_s)
    case.killed_processed = [o + 1 for o in _offsets(first)]
    case.committed_at_kill = committed_offsets(broker, group, topic).get(0)
    proc = _spawn(_worker_cmd(broker, topic, group, style, second, n_messages, -1, timeout_s),
                  folder / f"{group}-restart.log", read_stdout=False)
    try:
        case.restart_exit = proc.wait(timeout=timeout_s + 15)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _reap(proc)
    case.restart_processed = [o + 1 for o in _offsets(second)]
    return case
