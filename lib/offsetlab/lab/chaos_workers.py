"""The chaos run's consumer worker processes: starting, killing and stopping them
(:class:`WorkerPool`), and counting what they processed from their ``.seq`` files
(:class:`ProcessedTally`). The workers themselves are :mod:`offsetlab.lab.chaos_worker`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from offsetlab.bus.deadline import Deadline

from .chaos_worker import HOLDING, RELEASE, worker_files

__all__ = ["Worker", "WorkerPool", "ProcessedTally", "lines_in", "tail"]

log = logging.getLogger(__name__)


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    out: Path
    log: Path
    started: float
    #: the worker's slot: a replacement takes its victim's (its dice, its transactional id)
    slot: int = 0
    ended: float | None = None

    def file(self, kind: str) -> Path:
        """Its ``seq``, ``done``, ``fail`` or ``rej`` file (:func:`worker_files`)."""
        return worker_files(self.out)[kind]


class WorkerPool:
    """Chaos worker processes in one group. Each holds a stdin pipe to us: when this process
    dies, the kernel closes the pipe and the workers exit (see ``chaos_worker``)."""

    def __init__(self, *, folder: Path, bootstrap_servers: str, topic_prefix: str, group: str,
                 mode: str, session_timeout_ms: int, handle_ms: float,
                 client: str = "kafka-python", extra_args: Sequence[str] = (),
                 transactional_prefix: str | None = None) -> None:
        """``extra_args``: more worker options (seed, fail rate, poison, retry, sink);
        ``transactional_prefix`` (mode bus-eos): slot ``k``'s transactional id is
        ``f"{transactional_prefix}-slot-{k}"``."""
        self.folder = folder
        self._transactional_prefix = transactional_prefix
        self._argv = [sys.executable, "-m", "offsetlab.lab.chaos_worker",
                      "--bootstrap-servers", bootstrap_servers, "--topic-prefix", topic_prefix,
                      "--group", group, "--mode", mode, "--client", client,
                      "--session-timeout-ms", str(session_timeout_ms),
                      "--handle-ms", str(handle_ms), *extra_args]
        self.workers: list[Worker] = []
        self._lock = threading.Lock()
        lib = str(Path(__file__).resolve().parents[2])
        self._env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (lib, os.environ.get("PYTHONPATH", "")) if p))

    def spawn(self, *, hold: bool = False, slot: int | None = None) -> Worker:
        """Start one worker in ``slot`` (default: a new slot); ``hold`` (unsafe mode): it
        holds its first committed batch unhandled until :meth:`release` (see
        ``chaos_worker``)."""
        with self._lock:
            name = f"worker-{len(self.workers) + 1}"
            if slot is None:
                slot = len({w.slot for w in self.workers})
            out, log_path = self.folder / f"{name}.seq", self.folder / f"{name}.log"
            extra = ["--hold-first-batch"] if hold else []
            extra += ["--slot", str(slot)]
            if self._transactional_prefix is not None:
                extra += ["--transactional-id", f"{self._transactional_prefix}-slot-{slot}"]
            with open(log_path, "ab") as log_file:
                proc = subprocess.Popen(
                    [*self._argv, "--out", str(out), "--name", f"chaos-{name}", *extra],
                    stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT,
                    env=self._env)
            worker = Worker(name, proc, out, log_path, time.monotonic(), slot=slot)
            self.workers.append(worker)
            return worker

    def alive(self) -> list[Worker]:
        with self._lock:
            return [w for w in self.workers if w.proc.poll() is None]

    def holding(self) -> list[tuple[Worker, int]]:
        """Live workers that hold a committed, unhandled batch now, with its size (from the
        ``holding N committed unhandled`` line of their log, not yet followed by ``released``)."""
        found = []
        for w in self.alive():
            text = w.log.read_text(errors="replace")
            m = HOLDING.search(text)
            if m and "released" not in text[m.end():]:
                found.append((w, int(m.group(1))))
        return found

    def release(self, worker: Worker) -> None:
        """Let a holding worker handle its batch (no-op for one that has exited)."""
        if worker.proc.poll() is None and worker.proc.stdin is not None:
            try:
                worker.proc.stdin.write(RELEASE)
                worker.proc.stdin.flush()
            except OSError:
                pass

    def kill(self, worker: Worker) -> None:
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(timeout=30)
        worker.ended = time.monotonic()

    def wait_joined(self, workers: Sequence[Worker], timeout_s: float) -> None:
        """Wait until each worker's log says ``joined``; raise if one exits or time runs out."""
        deadline = Deadline(timeout_s)
        pending = list(workers)
        while pending:
            for w in list(pending):
                if w.proc.poll() is not None:
                    raise RuntimeError(f"{w.name} exited with {w.proc.returncode} before joining; "
                                       f"see {w.log}:\n{tail(w.log)}")
                if " joined" in w.log.read_text(errors="replace"):
                    pending.remove(w)
            if pending and deadline.expired():
                raise TimeoutError(f"{', '.join(w.name for w in pending)} did not join within "
                                   f"{timeout_s:.0f} s; see {pending[0].log}:\n{tail(pending[0].log)}")
            time.sleep(0.1)

    def stop_all(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every live worker (they commit and leave), SIGKILL what is left after
        ``timeout_s``, and close the pipes. Safe to call more than once."""
        with self._lock:
            workers = list(self.workers)
        for w in workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = Deadline(timeout_s)
        for w in workers:
            try:
                w.proc.wait(timeout=max(0.1, deadline.left()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", w.name, timeout_s)
                w.proc.kill()
                w.proc.wait(timeout=30)
            if w.ended is None:
                w.ended = time.monotonic()
            if w.proc.stdin is not None:
                try:
                    w.proc.stdin.close()
                except OSError:
                    pass


def lines_in(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))
    except OSError:
        return 0


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ProcessedTally:
    """Reads the workers' ``.seq`` files incrementally (complete lines only) into counts."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self._offsets: dict[Path, int] = {}

    def update(self, files: Sequence[Path]) -> Counter[int]:
        for path in files:
            if not path.exists():
                continue
            with open(path, "rb") as f:
                f.seek(self._offsets.get(path, 0))
                data = f.read()
            end = data.rfind(b"\n") + 1  # a line being written is read next time
            for line in data[:end].split():
                self.counts[int(line)] += 1
            self._offsets[path] = self._offsets.get(path, 0) + end
        return self.counts
