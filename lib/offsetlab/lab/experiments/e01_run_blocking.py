"""E01 Does ``run()`` block? The scenarios of ``notebooks/01_run_blocking.ipynb``.

The seed (run01) started two KafkaJS consumers of one group on a 3-partition topic: the
first caller did not await ``consumer.run()``, the second did; a producer wrote 5 messages
3 s apart and each handler slept 1 s. ``await run()`` returned once the group join
succeeded, 21 s later. Here the same shape runs three ways:

- :func:`raw_members`: plain kafka-python. There is no ``run()``: ``subscribe()`` only
  records the subscription and the join happens inside ``poll()``, so each member polls on
  its own thread. Recorded per member: the ``subscribe`` call, the first ``poll`` call, every
  ``poll`` until the assignment (as ``polls_before_assignment``), the assignment and each
  message consumed.
- :func:`runner_members`: the adapter's :class:`~offsetlab.bus.runner.ConsumerRunner`, the
  not-awaited caller calling ``start()`` and the awaited caller ``run()``, in the seed's
  order; their lifecycle events go on the timeline through
  :func:`~offsetlab.lab.timeline.runner_listener`.
- :func:`join_sweep`: the join-time points on one broker the notebook started with its own
  settings (two members together, a third arriving late, a new member after a member that
  was killed without leaving).

Every function takes a broker handle and plain settings, and returns plain data; times are
``time.monotonic()`` values or seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
    "JOIN_SCENARIOS",
    "raw_members",
    "runner_members",
    "produce_with_gap",
    "join_sweep",

    "create_topic_for",
    "settled",
]

#: the sweep's scenarios, in the order the notebook runs and plots them
JOIN_SCENARIOS = ("together", "late", "after killed member")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The experiment's knobs (the notebook's parameters map onto them).

    ``session_timeout_ms``/``heartbeat_interval_ms`` are the consumers' (short, so a killed
    member is waited out quickly and Tansu answers a first join in about half of it);
    ``poll_timeout_ms`` is the raw members' ``poll()`` timeout; ``killed_session_timeout_ms``
    the session timeout of the member the sweep kills (the broker waits that long for it);
    ``wait_s`` bounds every wait.
    """

    n_messages: int = 6
    gap_s: float = 0.3
    handler_delay_s: float = 0.1
    partitions: int = 3
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    poll_timeout_ms: int = 100
    killed_session_timeout_ms: int = 3000
    wait_s: float = 60.0

    def __post_init__(self) -> None:
        for key in ("n_messages", "partitions", "session_timeout_ms", "heartbeat_interval_ms",
                    "poll_timeout_ms", "killed_session_timeout_ms"):
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


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
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
        _wait(lambda: settled({m.name: m.assignment for m in members.values()}, s.partitions)
              or any(m.error for m in members.values()), s.wait_s, "raw members settled")
        produce_with_gap(broker, topic, timeline, s)
        _wait(lambda: _count(timeline, names) >= s.n_messages
              or any(m.error for m in members.values()), s.wait_s, "raw members consumed all")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    return RawResult(members, topic)


def _count(timeline: Timeline, lanes: tuple[str, ...]) -> int:
    return sum(1 for r in timeline.rows() if r.what == "consumed" and r.who in lanes)


# -- the adapter's runner --------------------------------------------------------------------
def _runner(broker: BrokerHandle, topic: str, group: str, name: str, s: Settings,
            handler: Callable[[Any], object], listeners: list[Any]) -> ConsumerRunner:
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

    runners = {lane: _runner(broker, topic, group, f"runner-{lane}", s, handler_for(lane),
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
        _wait(lambda: settled({k: r.assignment() for k, r in runners.items()}, s.partitions),
              s.wait_s, "runners settled")
        assignments = {k: sorted(tp.partition for tp in r.assignment()) for k, r in runners.items()}
        produce_with_gap(broker, topic, timeline, s)
        _wait(lambda: _count(timeline, lanes) >= s.n_messages, s.wait_s, "runners consumed all")
    finally:
        for r in runners.values():
            r.stop(timeout=30)
    return RunnerResult(topic, start_called, start_returned, run_called, run_returned, joins,
                        assignments)


# -- the join-time sweep ---------------------------------------------------------------------
_MEMBER_SCRIPT = """
import sys
from kafka import KafkaConsumer, ConsumerRebalanceListener
bootstrap, topic, group, session, heartbeat = sys.argv[1:6]
class L(ConsumerRebalanceListener):
    def on_partitions_revoked(self, revoked): pass
    def on_partitions_assigned(self, assigned):
        if assigned:
            print("assigned", flush=True)
c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id="killed-member",
                  session_timeout_ms=int(session), heartbeat_interval_ms=int(heartbeat))
c.partitions_for_topic(topic)  # metadata first, as warmed_consumer() does
c.subscribe([topic], listener=L())
while True:
    c.poll(timeout_ms=100)
"""


def killed_heartbeat_ms(s: Settings) -> int:
    """The heartbeat interval of the member the sweep kills: a quarter of its session."""
    return max(1, s.killed_session_timeout_ms // 4)


def _killed_member(broker: BrokerHandle, topic: str, group: str, s: Settings) -> float:
    """A member in another process joins ``group``, then is SIGKILLed (it never sends
    LeaveGroup, as a crashed or Ctrl-C'd script). Returns ``time.monotonic()`` of the kill."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _MEMBER_SCRIPT, broker.bootstrap_servers, topic, group,
         str(s.killed_session_timeout_ms), str(killed_heartbeat_ms(s))],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        got: list[str] = []
        reader = threading.Thread(target=lambda: got.append(proc.stdout.readline() if proc.stdout else ""),
                                  daemon=True)
        reader.start()
        reader.join(timeout=s.wait_s)
        if not got or not got[0].startswith("assigned"):
            raise TimeoutError(f"E01: the member to be killed did not join {group} within "
                               f"{s.wait_s} s (exit code {proc.poll()})")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    return killed


def join_sweep(broker: BrokerHandle, s: Settings, *, late_s: float = 0.5,
               killed_member: bool = True, make_name: Callable[[str], str] | None = None
               ) -> list[dict[str, Any]]:
    """The join-time points on ``broker`` (whose settings the caller chose), in order:

    - ``together``: runners ``a`` and ``b`` of a new group ``start()`` at the same moment;
    - ``late``: ``late_s`` after they settled, runner ``c`` joins the stable group;
    - ``after killed member`` (if ``killed_member``): in a new group, a member in another
      process joins and is SIGKILLed (it never sends LeaveGroup, like a crashed or Ctrl-C'd
      script), then runner ``d`` starts at once: the group still counts the dead member
      until the dead member's session timeout expires.

    One dict per point: ``scenario``, ``join_s`` (the arriving runner's join duration as
    its GroupJoin reports it: subscribe to first assignment; for ``together`` the later of
    the two), ``settle_s`` (from the arriving runner's start until every live member holds
    partitions), ``members`` (live members), ``generations`` (sorted generations of the
    arriving runners' first joins); ``after killed member`` also has ``since_kill_s``, from
    the SIGKILL until the new runner's ``run()`` returned with its join. The broker removes
    the dead member no sooner than its session timeout after its last heartbeat, and that
    heartbeat was at most one heartbeat interval (``killed_heartbeat_s``) before the kill, so
    ``since_kill_s >= session timeout - killed_heartbeat_s`` whenever the dead member held
    the join. Runners stop (and leave) on every exit path.
    """
    name = make_name or unique
    rows: list[dict[str, Any]] = []
    runners: dict[str, ConsumerRunner] = {}

    def make(n: str, topic: str, group: str) -> ConsumerRunner:
        runners[n] = _runner(broker, topic, group, f"sweep-{n}", s, lambda r: None, [])
        return runners[n]

    def settle(members: tuple[str, ...], what: str) -> None:
        _wait(lambda: settled({n: runners[n].assignment() for n in members}, s.partitions),
              s.wait_s, what)

    try:
        topic, group = create_topic_for(broker, name("e01-sweep"), s), name("e01-sweep-group")
        t0 = time.monotonic()
        handles = {n: make(n, topic, group).start() for n in ("a", "b")}
        joins = {n: h.wait(s.wait_s) for n, h in handles.items()}
        settle(("a", "b"), "together: a and b settled")
        rows.append({"scenario": "together", "join_s": max(j.duration_s for j in joins.values()),
                     "settle_s": time.monotonic() - t0, "members": 2,
                     "generations": sorted({j.generation for j in joins.values()})})
        time.sleep(late_s)
        t0 = time.monotonic()
        join = make("c", topic, group).run(timeout=s.wait_s)
        settle(("a", "b", "c"), "late: a, b and c settled")
        rows.append({"scenario": "late", "join_s": join.duration_s,
                     "settle_s": time.monotonic() - t0, "members": 3,
                     "generations": [join.generation]})
        if killed_member:
            topic, group = create_topic_for(broker, name("e01-killed"), s), name("e01-killed-group")
            killed = _killed_member(broker, topic, group, s)
            t0 = time.monotonic()
            join = make("d", topic, group).run(timeout=s.wait_s)
            joined = time.monotonic()
            settle(("d",), "after killed member: d settled")
            rows.append({"scenario": "after killed member", "join_s": join.duration_s,
                         "settle_s": time.monotonic() - t0, "members": 1,
                         "generations": [join.generation], "since_kill_s": joined - killed})
    finally:
        for r in runners.values():
            r.stop(timeout=30)
    for row in rows:
        for key in ("join_s", "settle_s", "since_kill_s"):
            if key in row:
                row[key] = round(row[key], 3)
    return rows


def create_topic_for(broker: BrokerHandle, name: str, s: Settings) -> str:
    """A topic of ``s.partitions`` partitions (waits until its metadata shows them)."""
    return create_topic(broker, name, s.partitions)
