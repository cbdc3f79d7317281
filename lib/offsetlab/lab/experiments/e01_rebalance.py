"""E01 A member joins a consuming group: eager against cooperative-sticky assignment.

kafka-python 3.0.12 has both protocols (``partition_assignment_strategy``; checked in the
installed ``kafka/coordinator/assignors/``): the default ``RangePartitionAssignor`` /
``RoundRobinPartitionAssignor`` are *eager* (every member revokes all its partitions before
it rejoins), ``CooperativeStickyAssignor`` is KIP-429's *incremental cooperative* protocol
(a member revokes only the partitions that move, and a second rebalance hands them over).

:func:`rebalance_once` runs one repeat for one strategy in a new group and topic of
``partitions`` partitions: members ``A`` and ``B`` (raw ``KafkaConsumer`` s on a thread each,
``poll(100 ms)`` in a loop, kafka-python's default auto-commit) consume while a steady
producer writes one message every ``produce_every_s`` round the partitions; after
``steady_s`` member ``C`` joins; once ``C`` holds partitions and every partition is held
once, ``tail_s`` more, then all stop. Recorded on a :class:`~offsetlab.lab.timeline.Timeline`
(lanes ``A``, ``B``, ``C``): ``handled`` per message, the listener's ``revoked`` /
``assigned`` / ``lost``, ``C``'s ``subscribe``; and from the broker's log the generations it
stabilized after ``C`` subscribed.

:func:`summarize` reads a run back from its rows (no broker): per existing member the
partitions it revoked after ``C`` subscribed, the longest stretch it handled nothing that
overlaps the rebalance (``C``'s subscribe to ``C``'s first non-empty assignment), its longest
stretch in the steady period before; the messages handled more than once; and how often a
member's abandoned join had to be restarted (``unstuck joins``, kafka-python's bug that
:func:`~offsetlab.bus.transports.kafka_python.compat.unstick_join` describes).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import wait_until
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.transports.kafka_python import compat
from offsetlab.lab.experiments.e01_restart import broker_log_text, rebalance_reasons
from offsetlab.lab.raw import create_topic, unique
from offsetlab.lab.timeline import Timeline, TimelineRebalanceListener, record_consumed

__all__ = ["EXISTING", "JOINER", "STRATEGIES", "RebalanceSettings", "generations_logged",
           "rebalance_once", "rebalance_repeats", "summarize"]

#: the notebook's name of each strategy -> kafka-python's assignor
STRATEGIES: dict[str, Any] = {"eager": RangePartitionAssignor,
                              "cooperative-sticky": CooperativeStickyAssignor}
EXISTING = ("A", "B")
JOINER = "C"


@dataclass(frozen=True, kw_only=True)
class RebalanceSettings:
    """``heartbeat_interval_ms`` is long on purpose: a member learns of a rebalance from a
    heartbeat response, so a wait for another member's heartbeat shows as up to this long, far
    from the ~0.1 s between two handled messages that the steady producer gives a member."""

    partitions: int = 6
    session_timeout_ms: int = 20000
    heartbeat_interval_ms: int = 2000
    produce_every_s: float = 0.02
    steady_s: float = 1.5
    tail_s: float = 0.5
    wait_s: float = 60.0

    def __post_init__(self) -> None:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ConfigError("RebalanceSettings.heartbeat_interval_ms must be at most a third "
                              "of session_timeout_ms")
        if self.partitions < 3:
            raise ConfigError("RebalanceSettings.partitions must be >= 3 (three members)")
        if self.produce_every_s * self.partitions * 5 > self.heartbeat_interval_ms / 1000:
            raise ConfigError("RebalanceSettings.produce_every_s is too slow to see a stop of a "
                              "heartbeat interval against the gaps between messages")


def generations_logged(log_text: str, group: str) -> int:
    """How many generations the broker's log says it stabilized for ``group``."""
    return log_text.count(f"Stabilized group {group} generation ")


def _member(broker: BrokerHandle, topic: str, group: str, who: str, strategy: Any,
            s: RebalanceSettings, timeline: Timeline, stop: threading.Event,
            errors: list[str]) -> None:
    consumer = None
    try:
        # metadata first, and the coordinator's metadata snapshot refreshed at subscribe
        # (compat.warmed_consumer): without it the leader often rejoins right after the first
        # assignment, a rebalance of its own in the middle of the steady period
        consumer = compat.warmed_consumer((topic,), snapshot=True)(**broker.clients(
            group_id=group, client_id=who, session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms, auto_offset_reset="earliest",
            partition_assignment_strategy=[strategy]))
        timeline.record(who, "subscribe")
        consumer.subscribe([topic], listener=TimelineRebalanceListener(timeline, who))
        held_at = time.monotonic()
        while not stop.is_set():
            if consumer.assignment():
                held_at = time.monotonic()
            elif time.monotonic() - held_at > 3 * s.heartbeat_interval_ms / 1000:
                # kafka-python 3.0.12 can abandon a rejoin (compat.unstick_join); waiting three
                # heartbeats first leaves every rebalance the protocol runs to itself
                if compat.unstick_join(consumer):
                    timeline.record(who, "unstuck join")
                held_at = time.monotonic()
            for records in consumer.poll(timeout_ms=100).values():
                for record in records:
                    record_consumed(timeline, who, record, what="handled")
    except Exception as exc:  # noqa: BLE001 - surfaced in the run's result
        errors.append(f"{who}: {type(exc).__name__}: {exc}")
    finally:
        if consumer is not None:
            consumer.close()


def _holding(timeline: Timeline, who: str) -> set[int]:
    held: set[int] = set()
    for row in timeline.rows():
        if row.who != who or not isinstance(row.detail, dict):
            continue
        parts = set(row.detail.get("partitions", ()))
        if row.what == "assigned":
            held |= parts
        elif row.what in ("revoked", "lost"):
            held -= parts
    return held


def rebalance_once(broker: BrokerHandle, strategy: str, s: RebalanceSettings, *,
                   repeat: int = 0, make_name: Callable[[str], str] | None = None
                   ) -> tuple[Timeline, dict[str, Any]]:
    """One run for ``strategy`` (a key of :data:`STRATEGIES`); its timeline and
    ``{"strategy", "repeat", "topic", "group", "generations_after_join", "rebalance_reasons",
    "errors"}`` (the last two from the broker's log, after C subscribed)."""
    name = make_name or unique
    topic = create_topic(broker, name("e01-rebalance"), s.partitions)
    group = name(f"e01-rebalance-{strategy}")
    timeline, stop, errors = Timeline(), threading.Event(), []
    threads: dict[str, threading.Thread] = {}

    def start(who: str) -> None:
        threads[who] = threading.Thread(
            target=_member, args=(broker, topic, group, who, STRATEGIES[strategy], s, timeline,
                                  stop, errors), name=f"e01-{strategy}-{who}", daemon=True)
        threads[who].start()

    def settled(members: Iterable[str]) -> bool:
        held = [_holding(timeline, m) for m in members]
        return all(held) and sum(map(len, held)) == s.partitions == len(set().union(*held))

    producing = threading.Event()

    def produce() -> None:
        producer = KafkaProducer(**broker.clients(linger_ms=0))
        try:
            i = 0
            while producing.is_set():
                producer.send(topic, f"m{i}".encode(), partition=i % s.partitions)
                i += 1
                time.sleep(s.produce_every_s)
            producer.flush(timeout=10)
        finally:
            producer.close(timeout=10)

    log_before: str | None = None
    producer_thread = threading.Thread(target=produce, name=f"e01-{strategy}-producer", daemon=True)
    try:
        for who in EXISTING:
            start(who)
        wait_until(lambda: settled(EXISTING) or bool(errors), timeout_s=s.wait_s,
                   what=f"E01 {strategy}: A and B settled", interval_s=0.02)
        producing.set()
        producer_thread.start()
        time.sleep(s.steady_s)
        log_before = broker_log_text(broker)
        start(JOINER)
        wait_until(lambda: settled((*EXISTING, JOINER)) or bool(errors), timeout_s=s.wait_s,
                   what=f"E01 {strategy}: A, B and C settled", interval_s=0.02)
        time.sleep(s.tail_s)
        timeline.record("producer", "end of run")
    finally:
        producing.clear()
        if producer_thread.is_alive():
            producer_thread.join(timeout=30)
        stop.set()
        for t in threads.values():
            t.join(timeout=30)
    log_after = broker_log_text(broker)
    generations, reasons = None, None
    if log_before is not None and log_after is not None:
        generations = generations_logged(log_after, group) - generations_logged(log_before, group)
        reasons = rebalance_reasons(log_after, group)[len(rebalance_reasons(log_before, group)):]
    return timeline, {"strategy": strategy, "repeat": repeat, "topic": topic, "group": group,
                      "generations_after_join": generations, "rebalance_reasons": reasons,
                      "errors": errors}


def rebalance_repeats(broker: BrokerHandle, s: RebalanceSettings, repeats: int,
                      strategies: Iterable[str] = tuple(STRATEGIES)
                      ) -> list[tuple[Timeline, dict[str, Any]]]:
    """``repeats`` repeats, one after the other; in each, every strategy at once (a group
    each). Results by repeat, then strategy."""
    names = list(strategies)
    out = []
    with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="e01-rebalance") as pool:
        for i in range(repeats):
            futures = [pool.submit(rebalance_once, broker, st, s, repeat=i) for st in names]
            out += [f.result() for f in futures]
    return out


# -- reading a run back ----------------------------------------------------------------------
def _longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch between consecutive ``times`` that overlaps ``[start, end]``
    (``start``/``end`` themselves count when nothing was handled before/after them)."""
    ts = sorted(times)
    before = [t for t in ts if t <= start]
    after = [t for t in ts if t >= end]
    inside = [t for t in ts if start < t < end]
    points = [before[-1] if before else start, *inside, after[0] if after else end]
    return max(b - a for a, b in zip(points, points[1:], strict=False)) if len(points) > 1 else 0.0


def summarize(rows: Iterable[Mapping[str, Any]], *, steady_s: float = 1.5) -> dict[str, Any]:
    """A run read back from its timeline rows (``Row.as_dict()`` or a frame's records).

    ``rebalance``: ``(C's subscribe, C's first non-empty assignment)``, on the timeline's
    clock; per existing member (``members``): ``revoked`` (partitions it revoked from
    ``C``'s subscribe on, sorted), ``held_before`` (partitions it held just before),
    ``longest_stop_s`` (:func:`_longest_gap` over the rebalance) and ``steady_gap_s`` (the
    same over the ``steady_s`` before it); ``handled_twice``: messages (partition, offset)
    handled more than once, by anyone."""
    rows = list(rows)
    c_start = min(r["t"] for r in rows if r["who"] == JOINER and r["what"] == "subscribe")
    c_assigned = min(r["t"] for r in rows if r["who"] == JOINER and r["what"] == "assigned"
                     and (r.get("detail") or {}).get("partitions"))
    members: dict[str, Any] = {}
    for who in EXISTING:
        mine = [r for r in rows if r["who"] == who]
        held: set[int] = set()
        revoked: set[int] = set()
        for r in sorted(mine, key=lambda r: r["t"]):
            parts = set((r.get("detail") or {}).get("partitions", ())) if r["what"] in (
                "assigned", "revoked", "lost") else set()
            if r["t"] < c_start:
                if r["what"] == "assigned":
                    held |= parts
                elif r["what"] in ("revoked", "lost"):
                    held -= parts
            elif r["what"] in ("revoked", "lost") and r["t"] <= c_assigned:
                revoked |= parts
        handled = [r["t"] for r in mine if r["what"] == "handled"]
        members[who] = {"held_before": sorted(held), "revoked": sorted(revoked),
                        "longest_stop_s": round(_longest_gap(handled, c_start, c_assigned), 3),
                        "steady_gap_s": round(_longest_gap(handled, c_start - steady_s + 0.5,
                                                           c_start), 3)}
    seen = Counter((r["partition"], r["offset"]) for r in rows if r["what"] == "handled")
    return {"rebalance": (round(c_start, 3), round(c_assigned, 3)),
            "unstuck joins": sum(1 for r in rows if r["what"] == "unstuck join"),
            "rebalance_s": round(c_assigned - c_start, 3), "members": members,
            "handled": sum(seen.values()),
            "handled_twice": sorted(k for k, n in seen.items() if n > 1)}
