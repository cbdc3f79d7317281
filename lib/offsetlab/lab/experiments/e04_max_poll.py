"""E04, new research: ``max_poll_records`` x handler time against ``max_poll_interval_ms``.

A raw kafka-python consumer (auto-commit off) handles each record of a ``poll()`` batch in
``handler_s`` seconds and commits the batch's positions after the whole batch (``commit()``,
i.e. ``offset + 1`` of the last record ``poll()`` handed out). A batch takes about
``max_poll_records x handler_s``. When that is longer than ``max_poll_interval_ms``, the next
``poll()`` comes too late: kafka-python's heartbeat thread notices and sends a LeaveGroup
(kafka-python 3.0.12, ``coordinator/base.py``), the broker removes the member, the batch's
commit fails (``CommitFailedError``), and the next ``poll()`` rejoins and is handed the
records again from the last committed position: duplicates. A batch well inside the interval
is handled and committed once.

:func:`run_case` runs one setting for ``budget_s`` seconds (or until every record was handled
and committed) and returns a :class:`MaxPollCase`: every handled record (offset, time),
every commit (ok or the exception class), the consumer's generations, and what the broker's
log says about the group (:func:`broker_group_lines`: members removed on LeaveGroup, or
expired by the session timeout). It never talks to a broker after the run; the findings
(:mod:`offsetlab.lab.experiments.e04_findings`) judge the case.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.lab.experiments.e03_raw import unstick_when_stuck
from offsetlab.lab.raw import committed_offsets, create_topic, produce, unique, warmed_consumer

__all__ = ["MaxPollCase", "run_case", "broker_group_lines", "removals", "stable_generations"]


@dataclass
class MaxPollCase:
    """One setting of the sweep and what happened."""

    max_poll_records: int
    handler_s: float
    max_poll_interval_ms: int
    session_timeout_ms: int
    n_messages: int
    topic: str = ""
    group: str = ""
    handled: list[tuple[int, float]] = field(default_factory=list)   # (offset, t since start)
    batches: list[tuple[float, float, int]] = field(default_factory=list)  # (start, seconds, records)
    commits: list[tuple[float, str]] = field(default_factory=list)   # (t, "ok" | exception class)
    generations: list[int] = field(default_factory=list)             # the consumer's, per batch
    committed_end: int | None = None                                 # read back from the broker
    broker_lines: list[str] = field(default_factory=list)            # the group's lines in broker.log
    log_read: bool = False            # a Kafka broker's log was read (other kinds do not write one)
    duration_s: float = 0.0

    @property
    def batch_s_planned(self) -> float:
        return self.max_poll_records * self.handler_s

    def handled_counts(self) -> dict[int, int]:
        counts = Counter(o for o, _ in self.handled)
        return {o: counts[o] for o in range(self.n_messages)}

    def duplicates(self) -> int:
        """Handlings beyond the first, over all records."""
        return sum(c - 1 for c in self.handled_counts().values() if c > 1)

    def batch_seconds(self) -> list[float]:
        return [s for _, s, n in self.batches if n]

    def row(self) -> dict[str, Any]:
        return {"max_poll_records": self.max_poll_records, "handler_s": self.handler_s,
                "batch_s_planned": round(self.batch_s_planned, 2),
                "max_poll_interval_s": self.max_poll_interval_ms / 1000,
                "batches": len(self.batch_seconds()),
                "longest batch s": round(max(self.batch_seconds(), default=0.0), 2),
                "handled": len(self.handled), "duplicates": self.duplicates(),
                "commits failed": sum(1 for _, c in self.commits if c != "ok"),
                "committed at end": self.committed_end,
                "removed during the run (broker log)": [k for _, k in removals(self.broker_lines)],
                "generations (broker log)": stable_generations(self.broker_lines)}


def _generation(consumer: KafkaConsumer) -> int:
    gen = getattr(getattr(consumer, "_coordinator", None), "_generation", None)
    return int(getattr(gen, "generation_id", -1)) if gen is not None else -1


def run_case(broker: BrokerHandle, *, max_poll_records: int, handler_s: float,
             max_poll_interval_ms: int, session_timeout_ms: int = 6000,
             n_messages: int = 16, budget_s: float = 12.0) -> MaxPollCase:
    """One setting: a fresh topic (1 partition) with ``n_messages``, a fresh group, a raw
    consumer handling batches for at most ``budget_s`` seconds (it stops earlier once every
    record was handled and the group's committed position reached the end)."""
    case = MaxPollCase(max_poll_records, handler_s, max_poll_interval_ms, session_timeout_ms, n_messages)
    case.topic = create_topic(broker, unique("e04-maxpoll"), 1)
    case.group = unique(f"e04-maxpoll-{max_poll_records}")
    produce(broker, case.topic, [(f"k{i}", f"message {i}") for i in range(n_messages)])
    consumer = warmed_consumer((case.topic,))(**broker.clients(
        group_id=case.group, client_id=case.group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=max_poll_records,
        max_poll_interval_ms=max_poll_interval_ms, session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=min(1000, session_timeout_ms // 3)))
    t0 = time.monotonic()
    committed_to = 0
    try:
        consumer.subscribe([case.topic])
        deadline = Deadline(budget_s)
        while not deadline.expired():
            batch = consumer.poll(timeout_ms=100)
            records = [r for rs in batch.values() for r in rs]
            unstick_when_stuck(consumer)
            if not records:
                if committed_to >= n_messages and len({o for o, _ in case.handled}) >= n_messages:
                    break
                continue
            start = time.monotonic() - t0
            case.generations.append(_generation(consumer))
            for r in records:
                time.sleep(handler_s)  # the handler's work
                case.handled.append((r.offset, round(time.monotonic() - t0, 3)))
            case.batches.append((start, time.monotonic() - t0 - start, len(records)))
            try:
                consumer.commit()
                case.commits.append((round(time.monotonic() - t0, 3), "ok"))
                committed_to = max(committed_to, records[-1].offset + 1)
            except KafkaError as exc:
                case.commits.append((round(time.monotonic() - t0, 3), type(exc).__name__))
    finally:
        case.duration_s = time.monotonic() - t0
        consumer.close()
    case.committed_end = committed_offsets(broker, case.group, case.topic).get(0)
    if broker.kind == "kafka" and broker.log_path:
        case.broker_lines = broker_group_lines(broker.log_path, case.group)
        case.log_read = True
    return case


def broker_group_lines(log_path: str | Path, group: str) -> list[str]:
    """The lines of the broker's log that name ``group`` (the group coordinator's account of
    joins, rebalances and removals)."""
    path = Path(log_path)
    if not path.exists():
        return []
    with path.open(encoding="utf-8", errors="replace") as f:
        return [line.rstrip("\n") for line in f if group in line]


_REBALANCE = re.compile(r"Preparing to rebalance group (?P<group>\S+) in state \S+ with old "
                        r"generation (?P<gen>\d+) .*?\(reason: (?P<reason>.*)")
_STABLE = re.compile(r"Stabilized group (?P<group>\S+) generation (?P<gen>\d+)")


def _reason_kind(reason: str) -> str | None:
    if "LeaveGroup" in reason:
        return "LeaveGroup"
    if "expir" in reason.lower() or "session timeout" in reason.lower():
        return "session timeout"
    return None  # a member joining, not a removal


def removals(lines: Sequence[str]) -> list[tuple[int, str]]:
    """The members removed *during* the run, as the broker's log tells it: each rebalance
    whose reason is a removal (``LeaveGroup``: the client left; ``session timeout``: its
    heartbeats stopped) and after which a later generation stabilized (so the consumer's
    own LeaveGroup when it closed at the end does not count). ``[(old generation, kind)]``."""
    stable = [int(m["gen"]) for line in lines if (m := _STABLE.search(line))]
    last = max(stable, default=0)
    out = []
    for line in lines:
        m = _REBALANCE.search(line)
        if m and (kind := _reason_kind(m["reason"])) and int(m["gen"]) < last:
            out.append((int(m["gen"]), kind))
    return out


def stable_generations(lines: Sequence[str]) -> list[int]:
    """The generations the broker's log says the group stabilized in, in order."""
    return [int(m["gen"]) for line in lines if (m := _STABLE.search(line))]
