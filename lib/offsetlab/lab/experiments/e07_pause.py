"""E07: pause while a dependency is down, or sleep in the handler (the seed's naive way).

The seed wanted the Kafka read to "delay fairly long for dependency down (minutes)" and
wondered whether ``pause()`` would do it without session timeouts. Every scenario here runs
the same story on one topic with ``partitions`` partitions and a group of two members:

- **worker**: its handler calls a dependency that, as the worker sees it, goes down for
  ``outage_s`` seconds (longer than the session timeout *and* the max poll interval) right
  before the messages are produced (a network partition between this instance and the
  dependency: :class:`OutageDependency`);
- **peer**: another member of the same group whose handler needs nothing; it is the witness
  that sees partitions move when the worker drops out of the group.

The strategies (one function each, all returning a :class:`ScenarioResult`):

- :func:`run_raw_sleep` -- raw kafka-python, the handler sleeps until the dependency is back
  and does not poll. kafka-python 3 heartbeats on its IO thread, but once
  ``max_poll_interval_ms`` passes without a ``poll()`` it leaves the group; the peer gets the
  worker's partitions and processes them again; the worker's ``commit()`` then fails.
- :func:`run_raw_pause` -- raw kafka-python: on a failed call the worker pauses the partition,
  seeks back to the record, and keeps polling; it resumes when the dependency answers again.
- :func:`run_runner_breaker` -- the adapter's :class:`~offsetlab.bus.runner.ConsumerRunner`
  with a :class:`~offsetlab.bus.breaker.CircuitBreaker` around the dependency: open ->
  pause (the runner keeps polling), half-open (alive check passed) -> resume, the next
  delivery is the trial call.

Everything is recorded on a :class:`~offsetlab.lab.timeline.Timeline` (lanes ``producer``,
``dependency``, ``worker``, ``peer``): ``consumed`` (handed out by ``poll()``), ``processed``
(the handler's work done), ``call_failed``, ``assigned``/``revoked``/``lost``, ``commit_failed``,
``sleep`` and ``pause`` intervals, and a ``settled`` row when both members hold partitions
(rebalances before it are the group forming). :func:`summarize` turns a result into the
numbers the notebook compares.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.breaker import BreakerState, BreakerTransition, CircuitBreaker
from offsetlab.bus.config import RunnerConfig
from offsetlab.bus.errors import ConfigError, DependencyUnavailable
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.interface import Activity, ActivityKind
from offsetlab.bus.retry import Backoff, InPlaceRetry
from offsetlab.bus.runner import BatchContext, ConsumerRunner
from offsetlab.lab.raw import create_topic, unique
from offsetlab.lab.timeline import (
    Timeline,
    TimelineRebalanceListener,
    deliveries,
    record_consumed,
    recorded_send,
    runner_listener,
)

__all__ = [
    "PauseParams",
    "OutageDependency",
    "GroupWatcher",
    "listed",
    "ScenarioResult",
    "run_raw_sleep",
    "run_raw_pause",
    "run_runner_breaker",
    "run_bus_depends_on",
    "run_side_by_side",
    "WorkItem",
    "summarize",
    "plot_comparison",
    "MEMBERSHIP",
]

#: the runners' poll timeout while joining (RunnerConfig.join_poll_timeout_ms)
JOIN_POLL_MS = 100

#: timeline kinds that mean "the group's assignment changed for this member"
MEMBERSHIP = ("assigned", "revoked", "lost")


@dataclass(frozen=True, kw_only=True)
class PauseParams:
    """One E07 run. Group timeouts are the worker's and the peer's consumer settings.

    ``outage_s`` must exceed both ``session_timeout_ms`` and ``max_poll_interval_ms`` (the
    question is what a pause longer than both does); ``heartbeat_interval_ms`` must be below
    a third of the session timeout (Kafka's rule of thumb, kafka-python checks less).
    """

    messages: int = 6
    partitions: int = 2
    outage_s: float = 7.0
    session_timeout_ms: int = 3000
    heartbeat_interval_ms: int = 500
    max_poll_interval_ms: int = 3500
    failure_threshold: int = 3
    probe_interval_s: float = 0.5
    timeout_s: float = 60.0
    settle_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for key in ("messages", "partitions", "failure_threshold"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"PauseParams.{key}={value!r}: give an int >= 1")
        if self.partitions < 2:
            raise ConfigError(f"PauseParams.partitions={self.partitions}: give >= 2, so that "
                              "the peer holds a partition and can take over the worker's")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ConfigError(
                f"PauseParams.heartbeat_interval_ms={self.heartbeat_interval_ms} must be at most "
                f"session_timeout_ms / 3 ({self.session_timeout_ms // 3}); lower it")
        longest_ms = max(self.session_timeout_ms, self.max_poll_interval_ms)
        if self.outage_s * 1000 <= longest_ms:
            raise ConfigError(
                f"PauseParams.outage_s={self.outage_s} must exceed session_timeout_ms and "
                f"max_poll_interval_ms ({longest_ms} ms): raise outage_s or lower the timeouts")
        for key in ("probe_interval_s", "timeout_s", "settle_timeout_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"PauseParams.{key} must be > 0")

    def group_settings(self) -> dict[str, Any]:
        """kafka-python consumer settings for both members."""
        return {"session_timeout_ms": self.session_timeout_ms,
                "heartbeat_interval_ms": self.heartbeat_interval_ms,
                "max_poll_interval_ms": self.max_poll_interval_ms,
                "auto_offset_reset": "earliest", "enable_auto_commit": False}


class OutageDependency:
    """The worker's dependency: down from :meth:`down_for` until that many seconds passed.

    :meth:`call` raises ``ConnectionError`` while down (a retriable error for the default
    classifier) and records every call; :meth:`available` is the alive check.
    """

    def __init__(self, timeline: Timeline, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._timeline = timeline
        self._clock = clock
        self._up_at = 0.0
        self._lock = threading.Lock()
        self.calls: list[tuple[str, bool]] = []  # (key, ok)

    def down_for(self, seconds: float) -> None:
        now = self._clock()
        self._up_at = now + seconds
        self._timeline.interval("dependency", "outage", now, self._up_at)

    def available(self) -> bool:
        return self._clock() >= self._up_at

    def call(self, key: str) -> None:
        ok = self.available()
        with self._lock:
            self.calls.append((key, ok))
        if not ok:
            raise ConnectionError(f"dependency unreachable (for {key})")


@dataclass
class ScenarioResult:
    """What one strategy run produced: the timeline and what the broker says at the end."""

    strategy: str
    params: PauseParams
    timeline: Timeline
    topic: str
    group: str
    produced: int
    end_offsets: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    settled_t: float = 0.0
    finished_t: float = 0.0
    #: the broker's view, (t, group state, member client ids) at every change
    group_views: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)
    #: the broker-side watcher of the last attempt (``watcher.unavailable`` says why it could
    #: not read the group, e.g. on Tansu)
    watcher: Any = None
    #: how often the group never formed and the scenario started again (GroupNeverSettled)
    join_retries: int = 0


# -- shared plumbing ------------------------------------------------------------------------
def listed(member: str) -> str:
    """The lane of ``member``'s membership as the broker lists it (:class:`GroupWatcher`)."""
    return f"{member} (listed)"


class GroupWatcher(threading.Thread):
    """The broker's view of the group, asked every ``every_s`` with ``describe_groups``.

    Records on ``timeline``: a ``group`` row on lane ``broker`` whenever the group's state or
    member list changes (detail: state, sorted client ids), and a ``member`` interval on lane
    ``"<member> (listed)"`` (:func:`listed`) while the broker lists it: group membership over
    time as the coordinator sees it, not as the client believes it.
    """

    def __init__(self, broker: BrokerHandle, group: str, timeline: Timeline, *,
                 every_s: float = 0.2, lanes: dict[str, str] | None = None) -> None:
        super().__init__(name=f"e07-watch-{group}", daemon=True)
        self.group, self.timeline, self.every_s = group, timeline, every_s
        self.lanes = dict(lanes or {})  # client id -> lane, where they differ
        self._admin = KafkaAdminClient(**broker.clients())
        self._done = threading.Event()
        self.views: list[tuple[float, str, tuple[str, ...]]] = []  # (t, state, members)
        #: why the broker's view could not be read (then the watcher stops asking), or None
        self.unavailable: str | None = None

    def run(self) -> None:
        last: tuple[str, tuple[str, ...]] | None = None
        try:
            while not self._done.is_set():
                try:
                    info = self._admin.describe_groups([self.group]).get(self.group, {})
                except KafkaError:
                    info = {}
                except Exception as exc:  # noqa: BLE001 - an answer kafka-python cannot parse
                    # (Tansu 0.6 answers authorized operations kafka-python 3.0.12 rejects)
                    self.unavailable = f"{type(exc).__name__}: {exc}"
                    self.timeline.record("broker", "group", detail={"unavailable": self.unavailable})
                    return
                state = str(info.get("group_state", "unknown"))
                members = tuple(sorted(self.lanes.get(m["client_id"], m["client_id"])
                                       for m in info.get("members", ())))
                if (state, members) != last:
                    t = self.timeline.now()
                    before = set(last[1]) if last else set()
                    for who in sorted(set(members) - before):
                        self.timeline.record(listed(who), "member", phase="start")
                    for who in sorted(before - set(members)):
                        self.timeline.record(listed(who), "member", phase="end")
                    self.timeline.record("broker", "group",
                                         detail={"state": state, "members": list(members)})
                    self.views.append((t, state, members))
                    last = (state, members)
                self._done.wait(self.every_s)
            for who in last[1] if last else ():  # close the intervals still open
                self.timeline.record(listed(who), "member", phase="end", detail={"watch": "ended"})
        finally:
            self._admin.close()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


def _key(record: Any) -> str:
    return record.key.decode() if record.key is not None else ""


class _Member(threading.Thread):
    """A raw KafkaConsumer polling on its own thread; ``step(consumer, batch)`` handles each
    poll's records (and commits) the way the strategy does."""

    def __init__(self, who: str, broker: BrokerHandle, result: ScenarioResult,
                 step: Callable[[KafkaConsumer, dict[TopicPartition, list[Any]]], None],
                 stop: threading.Event) -> None:
        super().__init__(name=f"e07-{result.strategy}-{who}", daemon=True)
        self.who, self.broker, self.result, self.step, self.stop = who, broker, result, step, stop
        self.assigned: list[int] = []

    def run(self) -> None:
        tl = self.result.timeline
        consumer = None
        try:
            consumer = KafkaConsumer(client_id=self.who, group_id=self.result.group,
                                     **self.broker.clients(**self.result.params.group_settings()))
            member = self

            class Track(TimelineRebalanceListener):
                def on_partitions_assigned(self, assigned: Any) -> None:
                    member.assigned = sorted(tp.partition for tp in assigned)
                    super().on_partitions_assigned(assigned)

                def on_partitions_revoked(self, revoked: Any) -> None:
                    if revoked:  # kafka-python revokes "nothing" before every first join
                        member.assigned = []
                        super().on_partitions_revoked(revoked)

            consumer.partitions_for_topic(self.result.topic)  # metadata known before the join
            consumer.subscribe([self.result.topic], listener=Track(tl, self.who))
            while not self.stop.is_set():
                self.step(consumer, consumer.poll(timeout_ms=100))
        except Exception as exc:  # noqa: BLE001 - recorded, the scenario reports it
            self.result.errors[self.who] = f"{type(exc).__name__}: {exc}"
            tl.record(self.who, "error", detail={"error": f"{type(exc).__name__}"})
        finally:
            if consumer is not None:
                consumer.close()


def _commit(consumer: KafkaConsumer, tl: Timeline, who: str,
            offsets: dict[TopicPartition, int] | None = None) -> None:
    """``commit()`` (positions) or ``commit(offsets)``; a refused commit is recorded."""
    try:
        if offsets is None:
            consumer.commit()
        elif offsets:
            consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        else:
            return
        tl.record(who, "commit", detail=None if offsets is None else
                  {"offsets": {f"{tp.partition}": o for tp, o in sorted(offsets.items())}})
    except KafkaError as exc:
        tl.record(who, "commit_failed", detail={"error": type(exc).__name__})


def _plain_step(tl: Timeline, who: str) -> Callable[[KafkaConsumer, dict], None]:
    """The peer: record and commit every batch (it needs no dependency)."""

    def step(consumer: KafkaConsumer, batch: dict[TopicPartition, list[Any]]) -> None:
        for records in batch.values():
            for r in records:
                record_consumed(tl, who, r)
                record_consumed(tl, who, r, what="processed")
        if batch:
            _commit(consumer, tl, who)

    return step


def _produce(broker: BrokerHandle, result: ScenarioResult) -> None:
    producer = KafkaProducer(**broker.clients())
    try:
        for i in range(result.params.messages):
            recorded_send(producer, result.timeline, "producer", result.topic,
                          value=f"message {i}".encode(), key=f"key-{i}".encode()).get(timeout=30)
    finally:
        producer.close()


def _read_back(broker: BrokerHandle, result: ScenarioResult) -> None:
    """End offsets of the topic and the group's committed offsets, from the broker."""
    consumer = KafkaConsumer(**broker.clients(group_id=result.group, enable_auto_commit=False))
    try:
        tps = [TopicPartition(result.topic, p) for p in range(result.params.partitions)]
        result.end_offsets = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
        result.committed = {tp.partition: consumer.committed(tp) for tp in tps}
    finally:
        consumer.close()


def _committed_now(admin: KafkaAdminClient, result: ScenarioResult) -> dict[int, int]:
    offsets = admin.list_group_offsets(result.group).get(result.group, {})
    return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == result.topic}


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str,
          errors: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if errors:
            raise RuntimeError(f"E07: a member failed while waiting for {what}: {errors}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"E07: waited {timeout_s} s for {what}")
        time.sleep(0.05)


def _story(broker: BrokerHandle, result: ScenarioResult, dependency: OutageDependency,
           holds: Callable[[], list[list[int]]],
           produce: Callable[[], None] | None = None,
           lanes: dict[str, str] | None = None) -> None:
    """The common story once the members run: settle, outage + produce, wait for the end."""
    p = result.params
    watcher = GroupWatcher(broker, result.group, result.timeline, lanes=lanes)
    result.watcher = watcher
    watcher.start()
    admin = KafkaAdminClient(**broker.clients())
    try:
        _settle(result, watcher, holds)
        result.settled_t = result.timeline.now()
        result.timeline.record("group", "settled", detail={"holds": sorted(map(len, holds()))})
        dependency.down_for(p.outage_s)
        if produce is None:
            _produce(broker, result)
        else:
            produce()
        end = {i: 0 for i in range(p.partitions)}
        for row in result.timeline.rows():
            if row.what == "produced" and row.partition is not None:
                end[row.partition] = max(end[row.partition], (row.offset or 0) + 1)
        _wait(lambda: dependency.available()
              and _committed_now(admin, result) == {k: v for k, v in end.items() if v}
              and all(holds()) and sum(map(len, holds())) == p.partitions,
              p.outage_s + p.timeout_s, "every message committed after the outage", result.errors)
        time.sleep(max(1.0, 2 * p.heartbeat_interval_ms / 1000))  # a late rebalance would show
        result.finished_t = result.timeline.now()
        result.timeline.record("group", "finished")
    finally:
        admin.close()
        watcher.stop()
        result.group_views = list(watcher.views)


class GroupNeverSettled(TimeoutError):
    """The group did not form within ``settle_timeout_s`` (before anything was produced).

    Seen with kafka-python 3.0.12 now and then: the group leader never completes its
    JoinGroup/SyncGroup round when the topic's metadata arrives during it, stops
    heartbeating, is evicted, and does not rejoin. The scenarios then start again on fresh
    topic and group names (:func:`_retrying`); ``ScenarioResult.join_retries`` counts it.
    """


def _retrying(fn: Callable[[BrokerHandle, PauseParams], ScenarioResult], tries: int = 3
              ) -> Callable[[BrokerHandle, PauseParams], ScenarioResult]:
    def run(broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
        for attempt in range(tries):
            try:
                result = fn(broker, params)
            except GroupNeverSettled:
                if attempt == tries - 1:
                    raise
                continue
            result.join_retries = attempt
            return result
        raise AssertionError("unreachable")

    run.__name__, run.__doc__ = fn.__name__, fn.__doc__
    return run


def _settle(result: ScenarioResult, watcher: GroupWatcher,
            holds: Callable[[], list[list[int]]], *, spell_s: float = 1.0) -> None:
    """Until both members hold partitions and the broker lists both in a Stable group,
    unchanged for ``spell_s``; :class:`GroupNeverSettled` after ``settle_timeout_s``."""
    p = result.params
    deadline = time.monotonic() + p.settle_timeout_s
    since: tuple[Any, ...] | None = None
    since_t = 0.0
    while True:
        if result.errors:
            raise RuntimeError(f"E07: a member failed while the group formed: {result.errors}")
        h = holds()
        view = watcher.views[-1] if watcher.views else None
        broker_ok = watcher.unavailable is not None or (
            view is not None and view[1] == "Stable" and len(view[2]) == 2)
        ok = all(h) and sum(map(len, h)) == p.partitions and broker_ok
        key = (tuple(map(tuple, h)), view) if ok else None
        if key is None or key != since:
            since, since_t = key, time.monotonic()
        elif time.monotonic() - since_t >= spell_s:
            return
        if time.monotonic() > deadline:
            raise GroupNeverSettled(f"E07 {result.strategy}: the group did not settle within "
                                    f"{p.settle_timeout_s} s (holds {h}, broker view {view})")
        time.sleep(0.05)


def _new_result(strategy: str, broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
    topic = create_topic(broker, unique(f"e07-{strategy}"), params.partitions)
    return ScenarioResult(strategy=strategy, params=params, timeline=Timeline(), topic=topic,
                          group=unique(f"e07-{strategy}-group"), produced=params.messages)


def _run_raw(strategy: str, broker: BrokerHandle, params: PauseParams,
             worker_step: Callable[[ScenarioResult, OutageDependency],
                                   Callable[[KafkaConsumer, dict], None]]) -> ScenarioResult:
    result = _new_result(strategy, broker, params)
    dependency = OutageDependency(result.timeline)
    stop = threading.Event()
    members = [_Member("worker", broker, result, worker_step(result, dependency), stop),
               _Member("peer", broker, result, _plain_step(result.timeline, "peer"), stop)]
    try:
        for m in members:
            m.start()
        _story(broker, result, dependency, lambda: [m.assigned for m in members])
    finally:
        stop.set()
        for m in members:
            m.join(timeout=params.timeout_s)
    _read_back(broker, result)
    return result


# -- the strategies -------------------------------------------------------------------------
def _sleep_step(result: ScenarioResult, dependency: OutageDependency) -> Callable[..., None]:
    """The seed's naive way: wait inside the handler until the dependency answers."""
    tl, who = result.timeline, "worker"

    def step(consumer: KafkaConsumer, batch: dict[TopicPartition, list[Any]]) -> None:
        for records in batch.values():
            for r in records:
                record_consumed(tl, who, r)
                if not dependency.available():
                    with tl.span(who, "sleep", partition=r.partition, offset=r.offset):
                        while not dependency.available():
                            time.sleep(0.05)
                dependency.call(_key(r))
                record_consumed(tl, who, r, what="processed")
        if batch:
            _commit(consumer, tl, who)

    return step


@_retrying
def run_raw_sleep(broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
    """Raw kafka-python; the worker's handler sleeps through the outage without polling."""
    return _run_raw("raw-sleep", broker, params, _sleep_step)


def _pause_step(result: ScenarioResult, dependency: OutageDependency) -> Callable[..., None]:
    """Pause the partition on a failed call, seek back to the record, keep polling; resume
    when the dependency's alive check passes."""
    tl, who = result.timeline, "worker"
    paused: set[TopicPartition] = set()

    def step(consumer: KafkaConsumer, batch: dict[TopicPartition, list[Any]]) -> None:
        if paused and dependency.available():
            live = [tp for tp in paused if tp in consumer.assignment()]
            consumer.resume(*live)
            tl.record(who, "pause", phase="end", detail={"partitions": sorted(tp.partition for tp in paused)})
            paused.clear()
        done: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            for r in records:
                record_consumed(tl, who, r)
                try:
                    dependency.call(_key(r))
                except ConnectionError:
                    tl.record(who, "call_failed", partition=r.partition, offset=r.offset, key=r.key)
                    consumer.pause(tp)
                    consumer.seek(tp, r.offset)  # redeliver this record after resume
                    if not paused:
                        tl.record(who, "pause", phase="start", detail={"partitions": [tp.partition]})
                    paused.add(tp)
                    break
                record_consumed(tl, who, r, what="processed")
                done[tp] = r.offset + 1
        _commit(consumer, tl, who, done)

    return step


@_retrying
def run_raw_pause(broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
    """Raw kafka-python; the worker pauses its partition and keeps polling through the outage."""
    return _run_raw("raw-pause", broker, params, _pause_step)


@_retrying
def run_runner_breaker(broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
    """The adapter: ConsumerRunner + CircuitBreaker (open -> pause, half-open -> resume)."""
    result = _new_result("runner-breaker", broker, params)
    tl = result.timeline
    dependency = OutageDependency(tl)
    breaker = CircuitBreaker("dependency", failure_threshold=params.failure_threshold,
                             success_threshold=1, probe_interval_s=params.probe_interval_s,
                             alive_check=dependency.available)
    config = RunnerConfig(bootstrap_servers=broker.bootstrap_servers, group_id=result.group,
                          topics=(result.topic,), name="worker", poll_timeout_ms=100,
                          join_poll_timeout_ms=JOIN_POLL_MS,
                          consumer_settings=params.group_settings())

    def worker_batch(records: list[Any], ctx: BatchContext) -> None:
        for r in records:
            if ctx.skipped(r):
                continue
            record_consumed(tl, "worker", r)
            try:
                breaker.call(dependency.call, _key(r))
            except (ConnectionError, DependencyUnavailable) as exc:
                tl.record("worker", "call_failed", partition=r.partition, offset=r.offset,
                          key=r.key, detail={"error": type(exc).__name__})
                return  # unsettled: the runner seeks back to it (and the rest of the batch)
            record_consumed(tl, "worker", r, what="processed")
            ctx.settle(r)

    def factory(**kwargs: Any) -> KafkaConsumer:
        consumer = KafkaConsumer(**kwargs)
        consumer.partitions_for_topic(result.topic)  # metadata known before the join
        return consumer

    worker = ConsumerRunner(config, batch_handler=worker_batch, consumer_factory=factory,
                            listeners=[runner_listener(tl, "worker")],
                            on_tick=lambda ctx: breaker.tick())

    def on_breaker(t: BreakerTransition) -> None:
        tl.record("breaker", t.state.value, detail={"reason": t.reason})
        if t.state is BreakerState.OPEN:
            worker.pause(worker.assignment())
        elif t.state is BreakerState.HALF_OPEN:
            worker.resume(worker.paused())

    breaker.add_listener(on_breaker)

    def peer_handler(r: Any) -> None:
        record_consumed(tl, "peer", r)
        record_consumed(tl, "peer", r, what="processed")

    peer = ConsumerRunner(RunnerConfig(bootstrap_servers=broker.bootstrap_servers,
                                       group_id=result.group, topics=(result.topic,), name="peer",
                                       join_poll_timeout_ms=JOIN_POLL_MS,
                                       consumer_settings=params.group_settings()),
                          handler=peer_handler, listeners=[runner_listener(tl, "peer")],
                          consumer_factory=factory)
    try:
        worker.start()
        peer.start()
        _story(broker, result, dependency,
               lambda: [sorted(tp.partition for tp in r.assignment()) for r in (worker, peer)])
    finally:
        for r in (worker, peer):
            try:
                r.stop(timeout=params.timeout_s)
            except Exception as exc:  # noqa: BLE001 - reported, the other still stops
                result.errors[r.name] = f"{type(exc).__name__}: {exc}"
    for r in (worker, peer):
        if r.last_error is not None:
            result.errors.setdefault(r.name, f"{type(r.last_error).__name__}: {r.last_error}")
    _read_back(broker, result)
    return result


@dataclass(frozen=True, kw_only=True)
class WorkItem(Event):
    """The bus scenario's message: one item of work for the worker's dependency."""

    topic: ClassVar[str] = "e07.work"
    item: str

    @property
    def key(self) -> str:
        return self.item


def _bus_activity(tl: Timeline) -> Callable[[Activity], None]:
    """KafkaBus activities -> E07's rows: delivered = consumed, settled = processed, a seek
    back after a failed call = call_failed."""

    def listener(a: Activity) -> None:
        who = a.subscription or "producer"
        where = {"topic": a.topic, "partition": a.partition, "offset": a.offset, "key": a.key}
        if a.kind is ActivityKind.PUBLISHED:
            tl.record("producer", "produced", at=_mono(a.at), **where)
        elif a.kind is ActivityKind.DELIVERED:
            tl.record(who, "consumed", at=_mono(a.at), detail={"attempt": a.attempt}, **where)
        elif a.kind is ActivityKind.SETTLED:
            tl.record(who, "processed", at=_mono(a.at), **where)
        elif a.kind is ActivityKind.SEEK_BACK:
            tl.record(who, "call_failed", at=_mono(a.at), detail={"attempt": a.attempt}, **where)
        # pauses come from the runner's lifecycle events (runner_listener), not from here

    return listener


def _mono(epoch: float) -> float:
    """An epoch time (the Kafka bus stamps activities with ``time.time()``) on the
    monotonic clock of the timeline."""
    return time.monotonic() - (time.time() - epoch)


@_retrying
def run_bus_depends_on(broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
    """The adapter's event bus: a KafkaBus subscription that ``depends_on`` the breaker.

    The worker's handler calls the dependency through the breaker; a failed call is retried
    in place (``InPlaceRetry``: seek back, short backoff); ``failure_threshold`` failures
    open the breaker and the bus pauses the subscription's partitions (and keeps polling)
    until the alive check half-opens it. The peer is a second subscription of the same group
    on the same bus, with no dependency.
    """
    from offsetlab.bus.kafka_bus import KafkaBus, KafkaBusConfig

    registry = EventRegistry([WorkItem], topic_prefix=unique("e07-bus") + ".")
    result = ScenarioResult(strategy="bus-depends-on", params=params, timeline=Timeline(),
                            topic=registry.topic_for(WorkItem),
                            group=unique("e07-bus-group"), produced=params.messages)
    tl = result.timeline
    dependency = OutageDependency(tl)
    breaker = CircuitBreaker("dependency", failure_threshold=params.failure_threshold,
                             success_threshold=1, probe_interval_s=params.probe_interval_s,
                             alive_check=dependency.available)
    breaker.add_listener(lambda t: tl.record("breaker", t.state.value, detail={"reason": t.reason}))
    settings = {k: v for k, v in params.group_settings().items() if k != "enable_auto_commit"}
    bus = KafkaBus(registry, KafkaBusConfig(bootstrap_servers=broker.bootstrap_servers,
                                            consumer_settings=settings,
                                            default_partitions=params.partitions))
    bus.add_listener(_bus_activity(tl))
    retry = InPlaceRetry(max_retries=params.failure_threshold + 5,
                         backoff=Backoff(initial_s=0.1, multiplier=1.0, max_s=0.1))
    try:
        worker = bus.subscribe(WorkItem, lambda e: breaker.call(dependency.call, e.item),
                               group=result.group, name="worker", retry=retry,
                               depends_on=(breaker,))
        peer = bus.subscribe(WorkItem, lambda e: None, group=result.group, name="peer")
        subs = (worker, peer)
        for sub in subs:
            sub.start()
            runner = sub.runner  # type: ignore[attr-defined]
            runner.add_listener(runner_listener(tl, sub.spec.name))

        def holds() -> list[list[int]]:
            return [sorted(tp.partition for tp in s.runner.assignment())  # type: ignore[attr-defined]
                    for s in subs]

        def produce() -> None:
            for i in range(params.messages):
                bus.publish(WorkItem(item=f"key-{i}"))

        lanes = {s.runner.name: s.spec.name for s in subs}  # type: ignore[attr-defined]
        _story(broker, result, dependency, holds, produce, lanes)
    finally:
        try:
            bus.close()
        except Exception as exc:  # noqa: BLE001 - reported
            result.errors["bus"] = f"{type(exc).__name__}: {exc}"
    _read_back(broker, result)
    return result


def run_side_by_side(broker: BrokerHandle, params: PauseParams,
                     *strategies: Callable[[BrokerHandle, PauseParams], ScenarioResult]
                     ) -> list[ScenarioResult]:
    """Run strategies at the same time (own topics, groups and timelines), each on its own
    thread; return their results in the order given, or raise the first failure."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(strategies), thread_name_prefix="e07") as pool:
        futures = [pool.submit(fn, broker, params) for fn in strategies]
        return [f.result() for f in futures]


# -- reading a result -----------------------------------------------------------------------
def summarize(result: ScenarioResult) -> dict[str, Any]:
    """The numbers E07 compares, from the timeline and what was read back from the broker.

    - ``rebalances``: assignments a member received between the group settling and the end
      of the story (each eager rebalance hands every member an assignment, so the busiest
      member's count is the group's); the members leaving at the end are not counted;
    - ``membership_changes``: assigned/revoked/lost rows of both members in that window;
    - ``processed``: handler completions; ``duplicates``: messages processed more than once;
      ``lost``: produced but never processed; ``max_attempts``: most deliveries of one message
      to the worker;
    - ``commit_failed``: refused commits (and their error classes);
    - ``fewest_members`` / ``group_states``: the broker's view in that window
      (:class:`GroupWatcher`): the fewest members it listed (``None`` when the broker's
      answer could not be read), and the states it reported;
    - ``worker_gone_after_s``: seconds from the worker's first sleep or pause to the broker
      no longer listing it (``None`` if it stayed listed);
    - ``longest_pause_s`` / ``longest_sleep_s``: the worker's longest pause / sleep interval;
    - ``committed_at_end``: the group's committed offsets equal the log end offsets.
    """
    frame = result.timeline.to_frame()
    end = result.finished_t or float("inf")
    after = frame[(frame.t >= result.settled_t) & (frame.t <= end)]  # not the members leaving
    membership = after[after.what.isin(MEMBERSHIP) & after.who.isin(["worker", "peer"])]
    processed = deliveries(frame, consumed="processed")
    delivered = deliveries(frame[frame.who != "peer"], consumed="consumed")
    failed = after[after.what == "commit_failed"]
    before = [v for v in result.group_views if v[0] < result.settled_t][-1:]  # in effect then
    window = before + [v for v in result.group_views if result.settled_t <= v[0] <= end]
    return {
        "strategy": result.strategy,
        "rebalances": int((membership.what == "assigned").groupby(membership.who).sum().max()
                          if len(membership) else 0),
        "membership_changes": len(membership),
        "produced": int((frame.what == "produced").sum()),
        "processed": int((frame.what == "processed").sum()),
        "duplicates": int((processed.consumed > 1).sum()),
        "lost": int((processed.consumed == 0).sum()),
        "max_attempts": int(delivered.consumed.max()) if len(delivered) else 0,
        "commit_failed": len(failed),
        "commit_errors": sorted({d["error"] for d in failed.detail if isinstance(d, dict)}),
        "fewest_members": min((len(m) for _, _, m in window), default=None),
        "group_states": sorted({state for _, state, _ in window}),
        "worker_gone_after_s": _gone_after(after),
        "longest_pause_s": _longest(after, "pause"),
        "longest_sleep_s": _longest(after, "sleep"),
        "committed_at_end": bool(result.end_offsets) and all(
            result.committed.get(p) == o for p, o in result.end_offsets.items() if o),
        "errors": sorted(result.errors),
    }



def _starts(frame: Any, what: str) -> list[float]:
    rows = frame[(frame.who == "worker") & (frame.what == what)]
    return [float(t) for t in rows[rows.phase == "start"].t]


def _longest(frame: Any, what: str) -> float | None:
    """The worker's longest ``what`` interval (an unclosed one runs to the frame's end)."""
    rows = frame[(frame.who == "worker") & (frame.what == what)]
    longest, start = None, None
    for phase, t in zip(rows.phase, rows.t, strict=True):
        if phase == "start" and start is None:
            start = float(t)
        elif phase == "end" and start is not None:
            longest, start = max(longest or 0.0, float(t) - start), None
    if start is not None and len(frame):
        longest = max(longest or 0.0, float(frame.t.max()) - start)
    return None if longest is None else round(longest, 3)


def _gone_after(frame: Any) -> float | None:
    began = sorted(_starts(frame, "sleep") + _starts(frame, "pause"))
    if not began:
        return None
    gone = frame[(frame.who == listed("worker")) & (frame.what == "member") & (frame.phase == "end")
                 & (frame.t >= began[0])]
    return None if gone.empty else round(float(gone.t.iloc[0]) - began[0], 3)


#: lane order of the pictures (lanes a strategy did not use are left out)
LANES = ("producer", "dependency", "breaker", "worker", listed("worker"), "peer", listed("peer"))


def plot_comparison(results: list[ScenarioResult], *, width: float = 11.0) -> Any:
    """One timeline per strategy, stacked on a shared time axis (a matplotlib Figure).

    Circles are messages *processed* (the handler's work done; a message processed twice
    shows twice); the ``(listed)`` lanes are the broker's view of membership (grey
    ``member`` bars); orange bars are pauses; grey ``sleep`` and ``outage`` bars the worker's
    sleeping handler and the dependency's outage."""
    from matplotlib.figure import Figure

    from offsetlab.lab.plots import plot_timeline

    heights = []
    frames = []
    for r in results:
        frame = r.timeline.to_frame()
        frame = frame[frame.what != "consumed"].copy()
        frame.loc[frame.what == "processed", "what"] = "consumed"
        lanes = [lane for lane in LANES if lane in set(frame.who)]
        frames.append((r, frame, lanes))
        heights.append(0.55 * len(lanes) + 0.9)
    fig = Figure(figsize=(width, sum(heights) + 0.5), layout="constrained")
    axes = fig.subplots(len(results), 1, sharex=True, height_ratios=heights, squeeze=False)[:, 0]
    for ax, (r, frame, lanes) in zip(axes, frames, strict=True):
        plot_timeline(frame, ax=ax, lanes=lanes,
                      title=f"{r.strategy} (circles: message processed)")
    return fig
