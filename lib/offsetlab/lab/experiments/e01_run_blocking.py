"""E01 Does ``run()`` block? The raw and runner scenarios of ``notebooks/01_run_blocking.ipynb``.

The seed (run01) started two KafkaJS consumers of one group on a 3-partition topic: the
first caller did not await ``consumer.run()``, the second did; a producer wrote 5 messages
3 s apart and each handler slept 1 s. ``await run()`` returned once the group join
succeeded, 21 s later. Here:

- :func:`raw_members`: plain kafka-python. There is no ``run()``: ``subscribe()`` only
  records the subscription and the join happens inside ``poll()``, so each member polls on
  its own thread. Recorded per member: the ``subscribe`` call, the first ``poll`` call, every
  ``poll`` until the assignment (as ``polls_before_assignment``), the assignment and each
  message consumed.
- :func:`runner_members`: the adapter's :class:`~offsetlab.bus.runner.ConsumerRunner`, the
  not-awaited caller calling ``start()`` and the awaited caller ``run()``, in the seed's
  order; their lifecycle events go on the timeline through
  :func:`~offsetlab.lab.timeline.runner_listener`.
- :func:`run_return_latencies`: ``run()`` alone, ``repeats`` times, each on a new group:
  how long after its assignment arrived ``run()`` returned.

The other parts of E01 live beside this module: :mod:`.e01_join` (join times against the
initial rebalance delay), :mod:`.e01_restart` (a killed member restarted, dynamic against
static membership), :mod:`.e01_rebalance` (eager against cooperative-sticky assignment) and
:mod:`.e01_findings` / :mod:`.e01_findings_groups` (the finders).

Every function takes a broker handle and plain settings, and returns plain data; times are
``time.monotonic()`` values or seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.config import RunnerConfig
from offsetlab.bus.deadline import wait_until
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.lifecycle import GroupJoin
from offsetlab.bus.runner import ConsumerRunner
from offsetlab.lab.raw import create_topic, unique, warmed_consumer
from offsetlab.lab.timeline import (
    Timeline,
    TimelineRebalanceListener,
    record_consumed,
    recorded_send,
    runner_listener,
)

__all__ = [
    "Settings",
    "RawResult",
    "RunnerResult",
    "raw_members",
    "runner_members",
    "produce_with_gap",
    "run_return_latencies",
    "create_topic_for",
    "make_runner",
    "wait_until_e01",
    "settled",
]

@dataclass(frozen=True, kw_only=True)
class Settings:
    """The experiment's knobs (the notebook's parameters map onto them).

    ``session_timeout_ms``/``heartbeat_interval_ms`` are the consumers' (short, so a killed
    member is waited out quickly and Tansu answers a first join in about half of it);
    ``poll_timeout_ms`` is the raw members' ``poll()`` timeout; ``wait_s`` bounds every wait.
    """

    n_messages: int = 6
    gap_s: float = 0.3
    handler_delay_s: float = 0.1
    partitions: int = 3
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    poll_timeout_ms: int = 100
    wait_s: float = 60.0

    def __post_init__(self) -> None:
        for key in ("n_messages", "partitions", "session_timeout_ms", "heartbeat_interval_ms",
                    "poll_timeout_ms"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"Settings.{key} must be an int > 0, got {value!r}")
        for key in ("gap_s", "handler_delay_s", "wait_s"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"Settings.{key} must be a number >= 0 (seconds), got {value!r}")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ConfigError(
                f"Settings.heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be at most a "
                f"third of session_timeout_ms ({self.session_timeout_ms}); lower the heartbeat")

    def consumer(self) -> dict[str, Any]:
        """kafka-python consumer keywords shared by every member of the experiment."""
        return {"session_timeout_ms": self.session_timeout_ms,
                "heartbeat_interval_ms": self.heartbeat_interval_ms,
                "auto_offset_reset": "earliest"}


def settled(assignments: Mapping[str, frozenset[Any] | set[Any] | list[Any]], partitions: int) -> bool:
    """Every member holds partitions, none twice, all ``partitions`` held."""
    held = [set(a) for a in assignments.values()]
    return all(held) and sum(map(len, held)) == partitions and len(set().union(*held)) == partitions


def wait_until_e01(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait for ``cond`` (every 10 ms), naming the E01 step in the timeout's message."""
    wait_until(cond, timeout_s=timeout_s, what=f"E01: {what}", interval_s=0.01)


def produce_with_gap(broker: BrokerHandle, topic: str, timeline: Timeline, s: Settings) -> None:
    """The seed's producer: ``n_messages`` keyed messages, ``gap_s`` apart, each acknowledged
    before the next (recorded as ``produced`` rows on the ``producer`` lane)."""
    producer = KafkaProducer(**broker.clients())
    try:
        for i in range(s.n_messages):
            if i and s.gap_s:
                time.sleep(s.gap_s)
            recorded_send(producer, timeline, "producer", topic, f"message {i}".encode(),
                          f"key-{i}".encode()).get(timeout=30)
    finally:
        producer.close(timeout=10)


# -- raw kafka-python ----------------------------------------------------------------------
@dataclass
class RawMember:
    """What one raw member did, in ``time.monotonic()`` values."""

    name: str
    subscribe_returned: float = 0.0
    subscribe_saw_assignment: bool = True
    polls: list[tuple[float, float]] = field(default_factory=list)  # (called, returned) until assigned
    assigned_at: float | None = None
    assignment: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def polls_before_assignment(self) -> int:
        """poll() calls that returned before the assignment arrived."""
        if self.assigned_at is None:
            return len(self.polls)
        return sum(1 for _, end in self.polls if end < self.assigned_at)

    @property
    def assigned_inside_poll(self) -> bool:
        """The assignment arrived while a poll() call was running."""
        return self.assigned_at is not None and any(
            start <= self.assigned_at <= end for start, end in self.polls)


@dataclass
class RawResult:
    members: dict[str, RawMember]
    topic: str


class _Assigned(TimelineRebalanceListener):
    def __init__(self, timeline: Timeline, member: RawMember) -> None:
        super().__init__(timeline, member.name)
        self.member = member

    def on_partitions_assigned(self, assigned: Any) -> None:
        super().on_partitions_assigned(assigned)
        if assigned and self.member.assigned_at is None:
            self.member.assigned_at = time.monotonic()
        self.member.assignment = sorted(tp.partition for tp in assigned)


def _raw_loop(broker: BrokerHandle, topic: str, group: str, timeline: Timeline, s: Settings,
              member: RawMember, stop: threading.Event) -> None:
    consumer = None
    try:
        consumer = KafkaConsumer(client_id=member.name, group_id=group, enable_auto_commit=False,
                                 **broker.clients(**s.consumer()))
        consumer.partitions_for_topic(topic)  # metadata first: see warmed_consumer()
        with timeline.span(member.name, "subscribe"):
            consumer.subscribe([topic], listener=_Assigned(timeline, member))
        member.subscribe_returned = time.monotonic()
        member.subscribe_saw_assignment = bool(consumer.assignment())
        first = True
        while not stop.is_set():
            called = time.monotonic()
            if first:
                with timeline.span(member.name, "first poll"):
                    batch = consumer.poll(timeout_ms=s.poll_timeout_ms)
                first = False
            else:
                batch = consumer.poll(timeout_ms=s.poll_timeout_ms)
            if member.assigned_at is None or called <= member.assigned_at:
                member.polls.append((called, time.monotonic()))
            for records in batch.values():
                for record in records:
                    record_consumed(timeline, member.name, record)
                    time.sleep(s.handler_delay_s)  # the seed's handler delay
            if batch:
                consumer.commit()
    except Exception as exc:  # surfaced in the result, the notebook shows it
        member.error = f"{type(exc).__name__}: {exc}"
    finally:
        if consumer is not None:
            consumer.close()


def raw_members(broker: BrokerHandle, topic: str, group: str, timeline: Timeline,
                s: Settings, names: tuple[str, str] = ("raw-1", "raw-2")) -> RawResult:
    """Two raw KafkaConsumers of ``group`` (a thread each), then the seed's producer; returns
    when every message was consumed (or ``wait_s``) and both consumers are closed."""
    members = {n: RawMember(n) for n in names}
    stop = threading.Event()
    threads = [threading.Thread(target=_raw_loop, args=(broker, topic, group, timeline, s, m, stop),
                                name=f"e01-{m.name}", daemon=True) for m in members.values()]
    try:
        for t in threads:
            t.start()
        wait_until_e01(lambda: settled({m.name: m.assignment for m in members.values()}, s.partitions)
              or any(m.error for m in members.values()), s.wait_s, "raw members settled")
        produce_with_gap(broker, topic, timeline, s)
        wait_until_e01(lambda: _count(timeline, names) >= s.n_messages
              or any(m.error for m in members.values()), s.wait_s, "raw members consumed all")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    return RawResult(members, topic)


def _count(timeline: Timeline, lanes: tuple[str, ...]) -> int:
    return sum(1 for r in timeline.rows() if r.what == "consumed" and r.who in lanes)


# -- the adapter's runner --------------------------------------------------------------------
def make_runner(broker: BrokerHandle, topic: str, group: str, name: str, s: Settings,
                handler: Callable[[Any], object], listeners: list[Any]) -> ConsumerRunner:
    """A runner of ``group`` on ``topic`` with the experiment's consumer settings (and warm
    metadata, :func:`~offsetlab.lab.raw.warmed_consumer`)."""
    config = RunnerConfig(bootstrap_servers=broker.bootstrap_servers, group_id=group,
                          topics=(topic,), name=name, consumer_settings=s.consumer())
    return ConsumerRunner(config, handler=handler, listeners=listeners,
                          consumer_factory=warmed_consumer((topic,)))


@dataclass
class RunnerResult:
    """The runner part: calls, joins and assignments, in ``time.monotonic()`` values."""

    topic: str
    start_called: float
    start_returned: float
    run_called: float
    run_returned: float
    joins: dict[str, GroupJoin]
    assignments: dict[str, list[int]]

    @property
    def run_returned_after_join(self) -> bool:
        return self.run_returned >= self.joins["awaited"].at

    @property
    def start_returned_before_join(self) -> bool:
        return self.start_returned < self.joins["not-awaited"].at

    @property
    def run_return_latency_ms(self) -> float:
        """How long after its assignment arrived the awaited ``run()`` returned."""
        return (self.run_returned - self.joins["awaited"].at) * 1000


def runner_members(broker: BrokerHandle, topic: str, group: str, timeline: Timeline,
                   s: Settings) -> RunnerResult:
    """The seed's run01 with the adapter: ``not-awaited`` calls ``start()``, then
    ``awaited`` calls ``run()``; then the producer; stop both once all was consumed."""
    lanes = ("not-awaited", "awaited")

    def handler_for(lane: str) -> Callable[[Any], None]:
        def handle(record: Any) -> None:
            record_consumed(timeline, lane, record)
            time.sleep(s.handler_delay_s)
        return handle

    runners = {lane: make_runner(broker, topic, group, f"runner-{lane}", s, handler_for(lane),
                             [runner_listener(timeline, lane)]) for lane in lanes}
    try:
        start_called = time.monotonic()
        timeline.record("not-awaited", "start() called", at=start_called)
        handle = runners["not-awaited"].start()
        start_returned = time.monotonic()
        timeline.record("not-awaited", "start() returned", at=start_returned)
        run_called = time.monotonic()
        timeline.record("awaited", "run() called", at=run_called)
        awaited_join = runners["awaited"].run(timeout=s.wait_s)
        run_returned = time.monotonic()
        timeline.record("awaited", "run() returned", at=run_returned)
        joins = {"awaited": awaited_join, "not-awaited": handle.wait(s.wait_s)}
        wait_until_e01(lambda: settled({k: r.assignment() for k, r in runners.items()}, s.partitions),
              s.wait_s, "runners settled")
        assignments = {k: sorted(tp.partition for tp in r.assignment()) for k, r in runners.items()}
        produce_with_gap(broker, topic, timeline, s)
        wait_until_e01(lambda: _count(timeline, lanes) >= s.n_messages, s.wait_s, "runners consumed all")
    finally:
        for r in runners.values():
            r.stop(timeout=30)
    return RunnerResult(topic, start_called, start_returned, run_called, run_returned, joins,
                        assignments)


def run_return_latencies(broker: BrokerHandle, topic: str, s: Settings, repeats: int, *,
                         make_name: Callable[[str], str] | None = None) -> list[dict[str, float]]:
    """``run()`` of one runner on a new group, ``repeats`` times (one after the other): per
    repeat ``latency_ms`` (from the moment its assignment arrived, as its ``GroupJoin``
    reports it, to ``run()`` returning), ``join_s`` (subscribe to assignment) and
    ``run_s`` (the whole call). The runner stops (and leaves) after each."""
    name = make_name or unique
    out = []
    for _ in range(repeats):
        runner = make_runner(broker, topic, name("e01-run-group"), "runner-repeat", s, lambda r: None, [])
        try:
            called = time.monotonic()
            join = runner.run(timeout=s.wait_s)
            returned = time.monotonic()
        finally:
            runner.stop(timeout=30)
        out.append({"latency_ms": round((returned - join.at) * 1000, 1),
                    "join_s": round(join.duration_s, 3), "run_s": round(returned - called, 3)})
    return out


def create_topic_for(broker: BrokerHandle, name: str, s: Settings) -> str:
    """A topic of ``s.partitions`` partitions (waits until its metadata shows them)."""
    return create_topic(broker, name, s.partitions)
