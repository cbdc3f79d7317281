"""E05's copy-then-commit window: a consumer killed after its re-produced copy was
acknowledged and before its commit, and what that duplicates.

Both E05 retries write a copy of the failed record to the main topic *and then* commit
``offset + 1``: the raw re-produce loop per record, the bus's ``MainTopicRetry`` once per
batch after every copy of the batch is acknowledged. Between the two, the copy is in the log
and the original is not yet committed past. :func:`run_window` puts a SIGKILL exactly there:
it produces ``n_messages`` to one partition, starts a worker process
(:mod:`~offsetlab.lab.experiments.e05_window_worker`) whose dependency refuses the original
delivery of message ``fail_seq``; with ``killed`` the worker kills itself right after that
copy's acknowledgement; a second worker in the same group then runs to the end (committed ==
end of the topic: its committed position is read first and the topic's end after it, and a
copy is acknowledged before the commit that passes its original, so no copy can still be on
its way when the two are equal). Without ``killed`` one worker runs it all (the control).

What is counted comes from two sources, as E05's other parts: the records on the main topic
read back from the broker (each with its attempt: the raw ``retry-count`` + 1 or the bus's
``offsetlab-attempt``) and the handler's recorded calls (each worker appends
``pid seq attempt outcome`` and flushes before the handler returns). Worker processes never
outlive :func:`run_window`: each holds a stdin pipe to this process and exits at its EOF, and
every exit path kills and reaps what is still running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.headers import attempt_of
from offsetlab.lab.experiments.e05_window_worker import KILL_ENV, WindowMessage, window_registry
from offsetlab.lab.raw import committed_offsets, create_topic, end_offsets, read_topic, unique

__all__ = ["WindowRun", "run_window", "run_windows", "MODES"]

MODES = ("raw", "bus")


@dataclass
class WindowRun:
    """One window run, read back from the broker and the workers' call files."""

    mode: str
    killed: bool
    fail_seq: int
    n_messages: int
    topic: str
    group: str
    #: exit status of each worker process in start order (-9: SIGKILL)
    exit_codes: list[int | None] = field(default_factory=list)
    #: the handler's calls, in order: (worker number 1.., seq, attempt, outcome)
    calls: list[tuple[int, int, int, str]] = field(default_factory=list)
    #: the main topic's records: (offset, seq, attempt)
    records: list[tuple[int, int, int]] = field(default_factory=list)
    committed: int | None = None
    end_offset: int = 0
    finished: bool = False
    duration_s: float = 0.0

    def copies(self, seq: int | None = None) -> list[int]:
        """Attempt numbers of the copies (attempt >= 2) of ``seq`` (default: the failing
        message) on the main topic, in offset order."""
        seq = self.fail_seq if seq is None else seq
        return [a for _, s, a in self.records if s == seq and a >= 2]

    def processed(self) -> dict[int, int]:
        """seq -> successful handler calls."""
        out: dict[int, int] = {}
        for _, seq, _, outcome in self.calls:
            if outcome == "processed":
                out[seq] = out.get(seq, 0) + 1
        return dict(sorted(out.items()))

    def summary(self) -> dict[str, Any]:
        processed = self.processed()
        return {"mode": self.mode, "killed": self.killed, "workers": len(self.exit_codes),
                "exit codes": self.exit_codes,
                "copies of the failing message": len(self.copies()),
                "its copies' attempts": self.copies(),
                "failing message processed": processed.get(self.fail_seq, 0),
                "handler calls": len(self.calls),
                "others processed twice": sorted(s for s, n in processed.items()
                                                 if n > 1 and s != self.fail_seq),
                "committed == end": self.committed == self.end_offset,
                "finished": self.finished, "duration_s": round(self.duration_s, 2)}


def _produce(broker: BrokerHandle, mode: str, topic: str, prefix: str, n: int) -> None:
    producer = KafkaProducer(**broker.clients(linger_ms=0))
    try:
        if mode == "raw":
            futures = [producer.send(topic, key=b"k", value=str(i).encode()) for i in range(n)]
        else:
            registry = window_registry(prefix)
            futures = []
            for i in range(n):
                enc = registry.encode(WindowMessage(seq=i))
                futures.append(producer.send(topic, key=enc.key, value=enc.value,
                                             headers=list(enc.headers)))
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close()


def _decode(mode: str, prefix: str, value: bytes) -> int:
    if mode == "raw":
        return int(value)
    event = window_registry(prefix).decode(value)
    assert isinstance(event, WindowMessage)
    return event.seq


def _attempt(mode: str, headers: Sequence[tuple[str, bytes | None]] | None) -> int:
    if mode == "raw":
        raw = dict(headers or []).get("retry-count")
        return int(raw) + 1 if raw else 1
    return attempt_of(headers or [])


def run_window(broker: BrokerHandle, mode: str, *, killed: bool, folder: Path,
               n_messages: int = 5, fail_seq: int = 2, timeout_s: float = 60.0) -> WindowRun:
    """One window run (see the module docstring); ``folder`` holds the workers' call files
    and logs."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: use one of {MODES}")
    t0 = time.monotonic()
    name = f"e05-window-{mode}-{'killed' if killed else 'control'}"
    prefix = unique(name) + "."
    topic = (create_topic(broker, unique(name), 1) if mode == "raw"
             else create_topic(broker, window_registry(prefix).topic_for(WindowMessage), 1))
    group = unique(f"{name}-group")
    run = WindowRun(mode=mode, killed=killed, fail_seq=fail_seq, n_messages=n_messages,
                    topic=topic, group=group)
    folder.mkdir(parents=True, exist_ok=True)
    calls_path = folder / f"{name}.calls"
    calls_path.write_text("")
    lib = str(Path(__file__).resolve().parents[3])
    base_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (lib, os.environ.get("PYTHONPATH", "")) if p))
    base_env.pop(KILL_ENV, None)
    argv = [sys.executable, "-m", "offsetlab.lab.experiments.e05_window_worker", "--mode", mode,
            "--bootstrap-servers", broker.bootstrap_servers, "--group", group,
            "--calls", str(calls_path), "--fail-seq", str(fail_seq),
            *(["--topic", topic] if mode == "raw" else ["--topic-prefix", prefix])]
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(kill: bool) -> subprocess.Popen[bytes]:
        env = dict(base_env, **({KILL_ENV: "1"} if kill else {}))
        with open(folder / f"{name}-worker{len(procs) + 1}.log", "ab") as log_file:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log_file,
                                    stderr=subprocess.STDOUT, env=env)
        procs.append(proc)
        return proc

    deadline = Deadline(timeout_s)
    try:
        _produce(broker, mode, topic, prefix, n_messages)
        if killed:
            first = spawn(True)
            first.wait(timeout=max(1.0, deadline.remaining() or timeout_s))
        last = spawn(False)
        while not deadline.expired() and last.poll() is None:
            try:  # the committed position first, then the end (see the module docstring)
                committed = committed_offsets(broker, group, topic).get(0)
            except KafkaError:  # a fresh cluster's coordinator may not be there yet
                committed = None
            if committed is not None and committed == end_offsets(broker, topic)[0]:
                run.finished = True
                break
            time.sleep(0.3)
        if last.poll() is None:
            last.send_signal(signal.SIGTERM)
            try:
                last.wait(timeout=30)
            except subprocess.TimeoutExpired:
                last.kill()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()
        run.exit_codes = [p.returncode for p in procs]
    pids: dict[str, int] = {}
    for line in calls_path.read_text().splitlines():
        pid, seq, attempt, outcome = line.split()
        worker = pids.setdefault(pid, len(pids) + 1)
        run.calls.append((worker, int(seq), int(attempt), outcome))
    run.records = [(r.offset, _decode(mode, prefix, r.value), _attempt(mode, r.headers))
                   for r in read_topic(broker, topic)]
    run.committed = committed_offsets(broker, group, topic).get(0)
    run.end_offset = end_offsets(broker, topic)[0]
    run.duration_s = time.monotonic() - t0
    return run


def run_windows(broker: BrokerHandle, folder: Path, *, n_messages: int = 5, fail_seq: int = 2,
                timeout_s: float = 60.0) -> dict[tuple[str, bool], WindowRun]:
    """Every (mode, killed) pair at once, each on its own topic and group."""
    cases = [(m, k) for m in MODES for k in (False, True)]
    with ThreadPoolExecutor(max_workers=len(cases), thread_name_prefix="e05-window") as pool:
        futures = {case: pool.submit(run_window, broker, case[0], killed=case[1], folder=folder,
                                     n_messages=n_messages, fail_seq=fail_seq, timeout_s=timeout_s)
                   for case in cases}
        return {case: f.result() for case, f in futures.items()}


def plot_window(runs: dict[tuple[str, bool], WindowRun]) -> Any:
    """Per mode, control against killed: copies of the failing message on the main topic,
    its successful handler calls, and the other messages processed twice."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, len(MODES), sharey=True)
    bars = ("copies of the failing\nmessage on the topic", "failing message\nprocessed",
            "other messages\nprocessed twice")
    for ax, mode in zip(axes, MODES, strict=True):
        for j, killed in enumerate((False, True)):
            run = runs[(mode, killed)]
            s = run.summary()
            values = [s["copies of the failing message"], s["failing message processed"],
                      len(s["others processed twice"])]
            xs = [i + (j - 0.5) * 0.38 for i in range(len(bars))]
            ax.bar(xs, values, width=0.36, color="#d62728" if killed else "#7f7f7f",
                   label="killed after the copy's ack, before the commit" if killed
                   else "no kill (control)")
            for x, v in zip(xs, values, strict=True):
                ax.text(x, v + 0.05, str(v), ha="center", fontsize=9)
        ax.set_xticks(range(len(bars)), bars, fontsize=8)
        ax.set_title({"raw": "raw re-produce loop (commit per record)",
                      "bus": "KafkaBus MainTopicRetry (commit per batch)"}[mode], fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("count (read back)")
    axes[0].legend(fontsize=8, loc="upper right")
    return fig
