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
are those both processed. Every worker is killed on every exit path (``finally``), and a
worker exits by itself when this process dies (its stdin closes).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _spawn(broker: BrokerHandle, topic: str, group: str, style: str, out: Path, end: int,
           kill_after: int, timeout_s: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "offsetlab.lab.experiments.e04_kill_worker",
         "--bootstrap-servers", broker.bootstrap_servers, "--topic", topic, "--group", group,
         "--out", str(out), "--mode", style, "--end", str(end), "--kill-after", str(kill_after),
         "--timeout-s", str(timeout_s)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _reap(proc: subprocess.Popen[str]) -> int | None:
    """SIGKILL ``proc`` if it still runs, close its pipes, wait for it; its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    for pipe in (proc.stdin, proc.stdout):
        try:
            if pipe is not None:
                pipe.close()
        except OSError:
            pass
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)


def _offsets(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def run_kill(broker: BrokerHandle, folder: Path, *, style: str, n_messages: int = 5,
             kill_after: int = 3, timeout_s: float = 45.0) -> KillCase:
    """One style: kill after message ``kill_after`` was processed, then restart (see the
    module docstring). Raises TimeoutError when the worker never reaches the kill point."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    case = KillCase(style, n_messages, kill_after)
    topic = create_topic(broker, unique("e04-kill"), 1)
    group = unique(f"e04-kill-{style.replace('+', 'plus')}")
    produce(broker, topic, [(f"k{i}", f"message {i}") for i in range(1, n_messages + 1)])
    folder.mkdir(parents=True, exist_ok=True)
    first, second = folder / f"{group}-killed.txt", folder / f"{group}-restart.txt"
    proc = _spawn(broker, topic, group, style, first, n_messages, kill_after - 1, timeout_s)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while True:
            line = proc.stdout.readline()
            if line.startswith("processed "):
                break
            if not line and proc.poll() is not None or time.monotonic() > deadline:
                raise TimeoutError(f"{style}: the worker never processed message {kill_after} "
                                   f"(exit {proc.poll()})")
        proc.send_signal(signal.SIGKILL)
        case.killed_exit = proc.wait(timeout=10)
    finally:
        if case.killed_exit is None:
            case.killed_exit = _reap(proc)
        else:
            _reap(proc)
    case.killed_processed = [o + 1 for o in _offsets(first)]
    case.committed_at_kill = committed_offsets(broker, group, topic).get(0)
    proc = _spawn(broker, topic, group, style, second, n_messages, -1, timeout_s)
    try:
        case.restart_exit = proc.wait(timeout=timeout_s + 15)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _reap(proc)
    case.restart_processed = [o + 1 for o in _offsets(second)]
    return case
