"""E02 What do the calls return, and how do errors surface? Scenarios of
``notebooks/02_errors_and_events.ipynb``.

The seed (run02) logged what KafkaJS's ``connect()``, ``subscribe()`` and ``run()`` return
(``undefined`` on success) and read the code for the rest: ``subscribe`` throws when the
consumer is running or a parameter is bad, ``run`` might fail if it cannot join, and after
that errors surface as events (CONNECT, DISCONNECT, STOP, CRASH); on KafkaJS 2.2.4 a join the
broker refused resolved ``run()`` after a CRASH event (E02's client section). Here each *scenario* runs
the same *operations* for raw kafka-python and for the adapter's runner, and a
:class:`Matrix` records, per (client, scenario, operation), what came back: ``returns
<type>`` or ``raises <ExceptionClass>`` (``JoinFailed(<cause class>)`` for the runner) and
how long the call took.

Operations, raw kafka-python: ``connect`` = ``KafkaConsumer(...)`` (it bootstraps in its
constructor); ``subscribe``; ``start/run`` = ``poll()`` until assigned or ``join_wait_s``
(there is no ``run()``; for *handler raises* it is the user's own poll loop); ``commit`` =
``commit(timeout_ms=...)``; ``close``. The runner: ``connect`` = building ``RunnerConfig``
and ``ConsumerRunner`` (no I/O yet); ``subscribe`` = topics are part of the frozen config,
so only *subscribe while running* tries something (assigning ``config.topics``);
``start/run`` = ``run(timeout)``; ``commit`` = whether the runner emitted a ``Commit`` event
(it commits settled records itself); ``close`` = ``stop()``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.config import CrashPolicy, RunnerConfig
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.lifecycle import LifecycleEvent
from offsetlab.bus.runner import ConsumerRunner
from offsetlab.bus.testing import committed_offsets
from offsetlab.bus.transports.kafka_python.compat import io_threads, reap_io_threads
from offsetlab.lab.experiments.e02_broker import check_auto_create_off
from offsetlab.lab.raw import create_topic, unique, warmed_consumer
from offsetlab.lab.timeline import Timeline, record_consumed, runner_listener

__all__ = ["OPERATIONS", "SCENARIOS", "INVALID_TOPIC", "Attempt", "Matrix", "Settings",
           "closed_port", "outcome", "raw_scenario", "runner_scenario", "broker_stopped",
           "milestones", "MILESTONES"]

OPERATIONS = ("connect", "subscribe", "start/run", "commit", "close")
SCENARIOS = ("success", "missing topic, auto-create on", "missing topic, auto-create off",
             "invalid topic name", "subscribe while running", "unreachable broker at start",
             "broker stopped while running", "handler raises")
INVALID_TOPIC = "not a valid topic!"
#: lifecycle kinds that mark a runner's life (rebalances and commits vary in number)
MILESTONES = ("connect", "group_join", "crash", "stop", "disconnect")
#: scenarios whose runner milestones differ between runs of the same code, so they are
#: measurements, not findings. *broker stopped while running*: in some runs the runner stays
#: RUNNING until it is stopped; in others a request in flight when the broker goes gets
#: ECONNREFUSED, the runner emits ``crash``, restarts once and its restart fails to bootstrap
#: (both seen on the embedded Kafka within one session, on an idle and on a loaded machine).
VARIES_WITH_TIMING = ("broker stopped while running",)
#: scenarios where the raw consumer's first assignment differs between runs, so the matrix
#: gives its outcome without the partition count. *missing topic, auto-create on*: the
#: metadata request that creates the topic races the group join (kafka-python 3.0.12 can
#: join before its metadata shows the topic and then holds no partition): 1 partition in
#: most runs, 0 in some (both seen on the embedded Kafka; the runner's matrix row already
#: leaves the count out for the missing-topic scenarios)
PARTITIONS_VARY = ("missing topic, auto-create on",)
#: scenarios whose topic exists: the runner's consumer fetches its metadata before it
#: subscribes (see e01's ``warmed_consumer``); the others keep kafka-python's own behaviour
_WARM = ("success", "subscribe while running", "broker stopped while running", "handler raises")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Short timeouts so that every failure shows within the notebook's budget."""

    n_messages: int = 3
    gap_s: float = 0.0
    handler_delay_s: float = 0.0
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    bootstrap_timeout_ms: int = 1500
    commit_timeout_ms: int = 1500
    join_wait_s: float = 15.0
    assign_wait_s: float = 3.0
    after_stop_s: float = 9.0

    def __post_init__(self) -> None:
        if not isinstance(self.n_messages, int) or self.n_messages < 3:
            raise ConfigError(f"Settings.n_messages must be an int >= 3 (the handler fails "
                              f"offset 1 and 2 must follow), got {self.n_messages!r}")
        for key in ("gap_s", "handler_delay_s", "join_wait_s", "assign_wait_s", "after_stop_s"):
            if not isinstance(getattr(self, key), int | float) or getattr(self, key) < 0:
                raise ConfigError(f"Settings.{key} must be a number >= 0 (seconds)")

    def consumer(self) -> dict[str, Any]:
        return {"session_timeout_ms": self.session_timeout_ms,
                "heartbeat_interval_ms": self.heartbeat_interval_ms,
                "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
                "auto_offset_reset": "earliest"}


@dataclass(frozen=True)
class Attempt:
    client: str
    scenario: str
    operation: str
    result: str
    seconds: float


def outcome(value: Any = None, error: BaseException | None = None) -> str:
    """``returns <type>`` / ``raises <class>``; a runner's JoinFailed names its cause."""
    if error is not None:
        name = type(error).__name__
        if error.__cause__ is not None and name == "JoinFailed":
            name += f"({type(error.__cause__).__name__})"
        return f"raises {name}"
    if value is None:
        return "returns None"
    if hasattr(value, "name") and type(value).__name__ == "RunnerState":
        return f"returns {value.name}"
    return f"returns {type(value).__name__}"


@dataclass
class Matrix:
    """What each operation gave back, per client and scenario (and notes)."""

    attempts: list[Attempt] = field(default_factory=list)
    notes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: *broker stopped while running*, per client: what was seen after the stop (measured)
    stopped: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def attempt(self, client: str, scenario: str, operation: str, fn: Callable[[], Any],
                *, describe: Callable[[Any], str] | None = None) -> tuple[bool, Any]:
        """Call ``fn``; record its outcome; return (ok, value or exception)."""
        t0 = time.monotonic()
        try:
            value = fn()
        except Exception as exc:  # the outcome IS the exception
            self.attempts.append(Attempt(client, scenario, operation, outcome(error=exc),
                                         time.monotonic() - t0))
            return False, exc
        text = describe(value) if describe else outcome(value)
        self.attempts.append(Attempt(client, scenario, operation, text, time.monotonic() - t0))
        return True, value

    def note(self, client: str, scenario: str, text: str) -> None:
        self.notes.setdefault((client, scenario), []).append(text)

    def table(self, column: str = "result") -> Any:
        """A DataFrame: one row per (client, scenario), one column per operation."""
        import pandas as pd

        frame = pd.DataFrame([a.__dict__ for a in self.attempts])
        table = frame.pivot_table(index=["client", "scenario"], columns="operation",
                                  values=column, aggfunc="last", sort=False)
        table = table.reindex(columns=[op for op in OPERATIONS if op in table.columns])
        table["notes"] = ["; ".join(self.notes.get(k, [])) for k in table.index]
        return table.fillna("-" if column == "result" else float("nan"))


def closed_port() -> str:
    """``127.0.0.1:<port>`` where nobody listens (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _produce(servers: str, topic: str, n: int, gap_s: float = 0.0) -> None:
    producer = KafkaProducer(bootstrap_servers=servers)
    try:
        for i in range(n):
            if i and gap_s:
                time.sleep(gap_s)
            producer.send(topic, key=f"key-{i}".encode(), value=f"message {i}".encode()).get(timeout=30)
    finally:
        producer.close(timeout=10)


def _topic_exists(servers: str, topic: str) -> bool:
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        return topic in admin.list_topics()
    finally:
        admin.close()


def _committed(servers: str, group: str, tp: TopicPartition) -> int | None:
    return committed_offsets(servers, group, tp.topic).get(tp.partition)


def _topic_for(broker: BrokerHandle, scenario: str, prefix: str, s: Settings) -> str:
    """The topic a scenario subscribes to (created up front where it should exist)."""
    if scenario == "invalid topic name":
        return INVALID_TOPIC
    if scenario.startswith("missing topic"):
        return unique(f"{prefix}-missing")
    topic = create_topic(broker, unique(prefix), 1)
    if scenario in ("success", "handler raises", "broker stopped while running"):
        _produce(broker.bootstrap_servers, topic, s.n_messages, s.gap_s)
    return topic


# -- raw kafka-python ---------------------------------------------------------------------
def raw_scenario(m: Matrix, broker: BrokerHandle, scenario: str, s: Settings, *,
                 stop_barrier: threading.Barrier | None = None) -> None:
    """Run ``scenario`` with a raw KafkaConsumer, recording every operation in ``m``.
    *broker stopped while running* stops the broker through ``stop_barrier`` (see
    :func:`broker_stopped`) or itself."""
    client = "kafka-python"
    servers = closed_port() if scenario == "unreachable broker at start" else broker.bootstrap_servers
    topic = "unused" if scenario == "unreachable broker at start" else _topic_for(broker, scenario, "e02-raw", s)
    group = unique("e02-raw-group")
    if scenario == "missing topic, auto-create off":
        check_auto_create_off(broker)
    before = io_threads()
    ok, consumer = m.attempt(client, scenario, "connect", lambda: KafkaConsumer(
        bootstrap_servers=servers, group_id=group, client_id=f"e02-raw-{group}",
        enable_auto_commit=False, **s.consumer()))
    if not ok:
        leaked = reap_io_threads(before, f"e02-raw-{group}")
        m.note(client, scenario, f"IO threads left running by the failed constructor: {leaked}")
        return
    try:
        if scenario != "subscribe while running":
            ok, _ = m.attempt(client, scenario, "subscribe", lambda: consumer.subscribe([topic]))
        else:
            consumer.subscribe([topic])
        if ok:
            _raw_run(m, client, scenario, consumer, topic, group, s, broker, stop_barrier)
    finally:
        m.attempt(client, scenario, "close", consumer.close)


def _assign_wait(scenario: str, s: Settings) -> float:
    """How long a scenario waits for its assignment: ``assign_wait_s`` where none may come
    (auto-create off), ``join_wait_s`` where one must."""
    return s.assign_wait_s if scenario == "missing topic, auto-create off" else s.join_wait_s


def _poll_until_assigned(consumer: KafkaConsumer, s: Settings, *, records: bool,
                         wait_long: bool) -> dict[Any, Any]:
    """poll() until assigned (and, with ``records``, until a poll returned records), at most
    ``join_wait_s`` (``wait_long``) or ``assign_wait_s``; returns the last poll's result."""
    deadline = Deadline(s.join_wait_s if wait_long else s.assign_wait_s)
    polled: dict[Any, Any] = {}
    while not deadline.expired() and (not consumer.assignment() or (records and not polled)):
        polled = consumer.poll(timeout_ms=100)
    return polled


def _raw_run(m: Matrix, client: str, scenario: str, consumer: KafkaConsumer, topic: str,
             group: str, s: Settings, broker: BrokerHandle,
             stop_barrier: threading.Barrier | None) -> None:
    if scenario == "handler raises":
        failed: list[int] = []

        def loop() -> None:  # the seed's handler, inside the user's own poll loop
            deadline = Deadline(s.join_wait_s)
            while not deadline.expired():
                for records in consumer.poll(timeout_ms=100).values():
                    for record in records:
                        if record.offset == 1:
                            failed.append(record.offset)
                            raise RuntimeError(f"handler failed on offset {record.offset}")
                        time.sleep(s.handler_delay_s)

        m.attempt(client, scenario, "start/run", loop)
        m.attempt(client, scenario, "commit", lambda: consumer.commit(timeout_ms=s.commit_timeout_ms))
        position = _committed(broker.bootstrap_servers, group, TopicPartition(topic, 0))
        m.note(client, scenario, f"commit() moved the position past the failed record: "
                                 f"{bool(failed) and position is not None and position > failed[0]}")
        return
    has_records = scenario in ("success", "broker stopped while running")
    m.attempt(client, scenario, "start/run", lambda: _poll_until_assigned(
        consumer, s, records=has_records, wait_long=_assign_wait(scenario, s) == s.join_wait_s),
              describe=lambda v: outcome(v) if scenario in PARTITIONS_VARY
              else f"{outcome(v)}, {len(consumer.assignment())} partitions assigned")
    if scenario == "subscribe while running":
        m.attempt(client, scenario, "subscribe", lambda: consumer.subscribe([unique("e02-other")]))
        m.note(client, scenario, f"subscription after it: {sorted(consumer.subscription() or ()) != [topic]}"
                                 " (changed)")
    if scenario.startswith("missing topic"):
        m.note(client, scenario, f"topic exists afterwards: {_topic_exists(broker.bootstrap_servers, topic)}")
    if scenario == "broker stopped while running":
        # what was consumed, committed explicitly: the commit cannot depend on whether the
        # client still counts the partitions as assigned by the time it runs
        positions = {tp: OffsetAndMetadata(consumer.position(tp), "", -1) for tp in consumer.assignment()}
        _stop(broker, stop_barrier)
        stop_t = time.monotonic()
        # the matrix cell: the first poll() after the stop, 1 s long; then the consumer keeps
        # polling for the rest of after_stop_s and what those polls raise is measured (it
        # differs between runs: in some a failed metadata refresh raises KafkaConnectionError
        # seconds after the stop, in others nothing raises)
        m.attempt(client, scenario, "start/run", lambda: consumer.poll(timeout_ms=1000),
                  describe=lambda v: f"{outcome(v)} (poll() in the first 1 s after the stop)")
        raised: list[tuple[float, str]] = []
        while time.monotonic() - stop_t < s.after_stop_s:
            try:
                consumer.poll(timeout_ms=100)
            except Exception as exc:  # measured: which class, how long after the stop
                raised.append((round(time.monotonic() - stop_t, 2), type(exc).__name__))
                time.sleep(0.1)
        m.stopped[(client, scenario)] = {"after_s": s.after_stop_s, "poll errors after the stop": raised}
        m.attempt(client, scenario, "commit",
                  lambda: consumer.commit(positions, timeout_ms=s.commit_timeout_ms))
        return
    m.attempt(client, scenario, "commit", lambda: consumer.commit(timeout_ms=s.commit_timeout_ms))


# -- the runner ---------------------------------------------------------------------------
def runner_scenario(m: Matrix, broker: BrokerHandle, scenario: str, s: Settings,
                    timeline: Timeline, *, on_event: Callable[[LifecycleEvent], object] | None = None,
                    stop_barrier: threading.Barrier | None = None) -> list[str]:
    """Run ``scenario`` with a ConsumerRunner; record operations in ``m`` and lifecycle
    events on ``timeline`` (lane = scenario). Returns the lifecycle kinds in order."""
    client = "runner"
    servers = closed_port() if scenario == "unreachable broker at start" else broker.bootstrap_servers
    topic = "unused" if scenario == "unreachable broker at start" else _topic_for(broker, scenario, "e02-runner", s)
    kinds: list[str] = []

    assigned_any: list[bool] = []  # a partition was assigned at some point (rebalances come and go)

    def listen(event: LifecycleEvent) -> None:
        kinds.append(event.kind.value)
        if getattr(event, "phase", None) == "assigned" and getattr(event, "partitions", ()):
            assigned_any.append(True)
        if on_event is not None:
            on_event(event)

    failed: list[int] = []

    def handler(record: Any) -> None:
        record_consumed(timeline, scenario, record)
        if scenario == "handler raises" and record.offset == 1 and not failed:
            failed.append(record.offset)
            raise RuntimeError(f"handler failed on offset {record.offset}")
        time.sleep(s.handler_delay_s)

    ok, runner = m.attempt(client, scenario, "connect", lambda: ConsumerRunner(
        RunnerConfig(bootstrap_servers=servers, group_id=unique("e02-runner-group"), topics=(topic,),
                     name=unique("e02-runner"), consumer_settings=s.consumer(),
                     crash_policy=CrashPolicy(backoff_s=0.2)),
        handler=handler, listeners=[runner_listener(timeline, scenario), listen],
        consumer_factory=warmed_consumer((topic,)) if scenario in _WARM else KafkaConsumer))
    if not ok:
        return kinds
    try:
        # a missing topic that auto-create makes may or may not be known at the first join
        ok, join = m.attempt(client, scenario, "start/run", lambda: runner.run(timeout=s.join_wait_s),
                             describe=lambda j: outcome(j) if scenario.startswith("missing topic")
                             else f"{outcome(j)}, {len(j.assignment)} partitions")
        if scenario == "subscribe while running" and ok:
            m.attempt(client, scenario, "subscribe",
                      lambda: setattr(runner.config, "topics", (unique("e02-other"),)))
            m.attempt(client, scenario, "start/run", lambda: runner.run(timeout=s.join_wait_s),
                      describe=lambda j: f"{outcome(j)} (the same join: {j is join})")
        if ok:  # let it consume / see the topic appear (at most join_wait_s / assign_wait_s)
            deadline = Deadline(_assign_wait(scenario, s))
            while not deadline.expired() and not (assigned_any and (
                    scenario not in ("success", "broker stopped while running")
                    or "commit" in kinds)):
                time.sleep(0.05)
        if scenario == "missing topic, auto-create off":
            check_auto_create_off(broker)  # still the broker we started, after the scenario
        if scenario.startswith("missing topic") and ok:
            m.note(client, scenario, f"a partition was assigned: {bool(assigned_any)}")
            m.note(client, scenario, f"topic exists afterwards: {_topic_exists(broker.bootstrap_servers, topic)}")
        if scenario == "broker stopped while running" and ok:
            _stop(broker, stop_barrier)
            stopped_at = len(kinds)
            stop_t = time.monotonic()
            time.sleep(s.after_stop_s)
            after = kinds[stopped_at:]
            m.stopped[(client, scenario)] = {"state": runner.state.name, "after_s": s.after_stop_s,
                                             "waited_s": round(time.monotonic() - stop_t, 2),
                                             "events_after_stop": list(after),
                                             "commits_before_stop": kinds[:stopped_at].count("commit"),
                                             "commits_after_stop": after.count("commit")}
            # only commits after the stop: the one before it is what the scenario waited for
            m.attempt(client, scenario, "commit", lambda: after.count("commit"),
                      describe=lambda n: "Commit emitted after the stop" if n else "no Commit after the stop")
        if scenario == "handler raises" and ok:
            # 0 and 1 (raises), then after the restart 1 again and 2
            deadline = Deadline(s.join_wait_s)
            while not deadline.expired() and sum(
                    1 for r in timeline.rows() if r.who == scenario and r.what == "consumed") < 4:
                time.sleep(0.05)
            m.note(client, scenario, f"restarts: {runner.restarts}")
        if (ok or scenario == "subscribe while running") and scenario != "broker stopped while running":
            m.attempt(client, scenario, "commit", lambda: kinds.count("commit"),
                      describe=lambda n: "Commit emitted" if n else "no Commit")
    finally:
        m.attempt(client, scenario, "close", lambda: runner.stop(timeout=30))
    return kinds


def _stop(broker: BrokerHandle, barrier: threading.Barrier | None) -> None:
    if barrier is None:
        broker.stop()
    else:
        barrier.wait()  # the barrier's action stops the broker once both clients are here


def broker_stopped(m: Matrix, broker: BrokerHandle, s: Settings, timeline: Timeline, *,
                   on_event: Callable[[LifecycleEvent], object] | None = None) -> list[str]:
    """*broker stopped while running* for both clients at once on ``broker`` (which ends
    stopped): each joins and consumes, then the broker is stopped when both are ready, and
    both go on. Returns the runner's lifecycle kinds."""
    scenario = "broker stopped while running"
    barrier = threading.Barrier(2, action=broker.stop, timeout=s.join_wait_s + 30)
    raw = threading.Thread(target=raw_scenario, args=(m, broker, scenario, s),
                           kwargs={"stop_barrier": barrier}, name="e02-raw-stopped", daemon=True)
    raw.start()
    try:
        return runner_scenario(m, broker, scenario, s, timeline, on_event=on_event,
                               stop_barrier=barrier)
    finally:
        raw.join(timeout=s.join_wait_s + 60)


def milestones(kinds: list[str]) -> list[str]:
    """The lifecycle kinds that mark a runner's life, in order (see :data:`MILESTONES`)."""
    return [k for k in kinds if k in MILESTONES]
