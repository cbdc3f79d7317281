"""E07's common parts: the parameters, the worker's dependency, a run's result, and the
story every strategy plays (members settle, the dependency goes down, messages are
produced, wait until everything is committed after the outage, read the offsets back).

The strategies are in :mod:`~offsetlab.lab.experiments.e07_raw` and
:mod:`~offsetlab.lab.experiments.e07_adapter`; :mod:`~offsetlab.lab.experiments.e07_pause`
is what the notebook imports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.transports.kafka_python import compat
from offsetlab.lab.experiments.e07_watch import GroupNeverSettled, GroupWatcher, settle
from offsetlab.lab.raw import committed_offsets, create_topic, end_offsets, unique
from offsetlab.lab.timeline import (
    Timeline,
    TimelineRebalanceListener,
    record_consumed,
    recorded_send,
)

__all__ = [
    "PauseParams",
    "OutageDependency",
    "ScenarioResult",
    "Strategy",
    "RawMember",
    "run_story",
    "retrying",
    "new_result",
    "read_back",
    "key_of",
    "commit_recorded",
    "plain_step",
    "JOIN_POLL_MS",
]

#: the runners' poll timeout while joining (RunnerConfig.join_poll_timeout_ms)
JOIN_POLL_MS = 100


@dataclass(frozen=True, kw_only=True)
class PauseParams:
    """One E07 run. Group timeouts are the worker's and the peer's consumer settings.

    ``outage_s`` must exceed both ``session_timeout_ms`` and ``max_poll_interval_ms`` (the
    question is what a pause longer than both does); ``heartbeat_interval_ms`` must be below
    a third of the session timeout (Kafka's rule of thumb, kafka-python checks less).
    """

    messages: int = 6
    partitions: int = 2
    outage_s: float = 10.0
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 500
    max_poll_interval_ms: int = 3000
    failure_threshold: int = 3
    probe_interval_s: float = 0.5
    timeout_s: float = 60.0
    settle_timeout_s: float = 10.0
    #: seconds after the messages are produced (the worker has paused by then) at which a
    #: third member joins the group on a topic of its own, stays ``joiner_stays_s`` and leaves
    #: (two rebalances while the worker is paused); None: no third member
    rebalance_after_s: float | None = None
    joiner_stays_s: float = 2.0

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
        for key in ("probe_interval_s", "timeout_s", "settle_timeout_s", "joiner_stays_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"PauseParams.{key} must be > 0")
        if self.rebalance_after_s is not None and not (
                0 < self.rebalance_after_s
                and self.rebalance_after_s + self.joiner_stays_s + 2 <= self.outage_s):
            raise ConfigError(
                f"PauseParams.rebalance_after_s={self.rebalance_after_s}: the third member must "
                f"join after the messages and have left 2 s before the outage ends "
                f"(rebalance_after_s + joiner_stays_s + 2 <= outage_s={self.outage_s})")

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

    @property
    def up_at(self) -> float:
        """When the dependency answers again (on this object's clock)."""
        return self._up_at

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
    #: timeline times of the story's moments (``outage_end``; with a third member
    #: ``rebalance_start``, ``joiner_left``) and ``paused_partition`` (the worker's partition)
    marks: dict[str, float] = field(default_factory=dict)


#: a strategy: runs one scenario against a broker and returns what happened
Strategy = Callable[[BrokerHandle, PauseParams], ScenarioResult]


def key_of(record: Any) -> str:
    return record.key.decode() if record.key is not None else ""


class RawMember(threading.Thread):
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
            held_at = time.monotonic()
            while not self.stop.is_set():
                self.step(consumer, consumer.poll(timeout_ms=100))
                if self.assigned:  # what the rebalance listener was last handed
                    held_at = time.monotonic()
                elif time.monotonic() - held_at > 3 * self.result.params.heartbeat_interval_ms / 1000:
                    # kafka-python 3.0.12 can abandon a rejoin (compat.unstick_join); three
                    # heartbeats first leave every rebalance the protocol runs to itself
                    if compat.unstick_join(consumer):
                        tl.record(self.who, "unstuck join")
                    held_at = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - recorded, the scenario reports it
            self.result.errors[self.who] = f"{type(exc).__name__}: {exc}"
            tl.record(self.who, "error", detail={"error": f"{type(exc).__name__}"})
        finally:
            if consumer is not None:
                consumer.close()


def commit_recorded(consumer: KafkaConsumer, tl: Timeline, who: str,
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


def plain_step(tl: Timeline, who: str) -> Callable[[KafkaConsumer, dict], None]:
    """The peer: record and commit every batch (it needs no dependency)."""

    def step(consumer: KafkaConsumer, batch: dict[TopicPartition, list[Any]]) -> None:
        for records in batch.values():
            for r in records:
                record_consumed(tl, who, r)
                record_consumed(tl, who, r, what="processed")
        if batch:
            commit_recorded(consumer, tl, who)

    return step


def produce_keyed(broker: BrokerHandle, result: ScenarioResult) -> None:
    producer = KafkaProducer(**broker.clients())
    try:
        for i in range(result.params.messages):
            recorded_send(producer, result.timeline, "producer", result.topic,
                          value=f"message {i}".encode(), key=f"key-{i}".encode()).get(timeout=30)
    finally:
        producer.close()


def read_back(broker: BrokerHandle, result: ScenarioResult) -> None:
    """End offsets of the topic and the group's committed offsets, from the broker."""
    partitions = range(result.params.partitions)
    ends = end_offsets(broker, result.topic)
    committed = committed_offsets(broker, result.group, result.topic)
    result.end_offsets = {p: ends[p] for p in partitions}
    result.committed = {p: committed.get(p) for p in partitions}  # None: never committed


def committed_now(admin: KafkaAdminClient, result: ScenarioResult) -> dict[int, int]:
    offsets = admin.list_group_offsets(result.group).get(result.group, {})
    return {tp.partition: om.offset for tp, om in offsets.items() if tp.topic == result.topic}


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str,
          errors: dict[str, str] | None = None) -> None:
    deadline = Deadline(timeout_s)
    while not predicate():
        if errors:
            raise RuntimeError(f"E07: a member failed while waiting for {what}: {errors}")
        if deadline.expired():
            raise TimeoutError(f"E07: waited {timeout_s} s for {what}")
        time.sleep(0.05)


def run_story(broker: BrokerHandle, result: ScenarioResult, dependency: OutageDependency,
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
        settle(holds, watcher, partitions=p.partitions, timeout_s=p.settle_timeout_s,
               errors=result.errors, name=result.strategy)
        result.settled_t = result.timeline.now()
        result.timeline.record("group", "settled", detail={"holds": sorted(map(len, holds()))})
        dependency.down_for(p.outage_s)
        result.marks["outage_end"] = result.timeline.to_t(dependency.up_at)
        result.marks["paused_partition"] = holds()[0][0]  # the worker's (it holds one)
        if produce is None:
            produce_keyed(broker, result)
        else:
            produce()
        if p.rebalance_after_s is not None:
            from offsetlab.lab.experiments.e07_rebalance import third_member_visits

            third_member_visits(broker, result)
        end = {i: 0 for i in range(p.partitions)}
        for row in result.timeline.rows():
            if row.what == "produced" and row.partition is not None:
                end[row.partition] = max(end[row.partition], (row.offset or 0) + 1)
        wait_for(lambda: dependency.available()
              and committed_now(admin, result) == {k: v for k, v in end.items() if v}
              and all(holds()) and sum(map(len, holds())) == p.partitions,
              p.outage_s + p.timeout_s, "every message committed after the outage", result.errors)
        time.sleep(max(1.0, 2 * p.heartbeat_interval_ms / 1000))  # a late rebalance would show
        result.finished_t = result.timeline.now()
        result.timeline.record("group", "finished")
    finally:
        admin.close()
        watcher.stop()
        result.group_views = list(watcher.views)


def retrying(fn: Strategy, tries: int = 3) -> Strategy:
    """``fn`` started again (fresh names) when the group never formed (at most ``tries``
    times); the result's ``join_retries`` says how often."""

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


def new_result(strategy: str, broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
    topic = create_topic(broker, unique(f"e07-{strategy}"), params.partitions)
    return ScenarioResult(strategy=strategy, params=params, timeline=Timeline(), topic=topic,
                          group=unique(f"e07-{strategy}-group"), produced=params.messages)
