"""The in-memory event bus: Kafka's semantics, no broker, driven by hand.

It keeps what a broker would: per-topic logs split into partitions (keyed records go to
``murmur2(key) % partitions``, like Kafka's default partitioner: :mod:`~offsetlab.bus.memory_log`;
keyless records round-robin), consumer groups with committed positions (offset + 1 after
each settled record), partitions assigned round-robin among a group's running subscriptions
and reassigned (a rebalance) when one starts or stops. Its subscriptions
(:mod:`~offsetlab.bus.memory_subscription`) carry out verdicts with the same
:class:`~offsetlab.bus.core.SubscriptionCore` as the Kafka bus's, so they write retry copies
and dead letters with the same :mod:`~offsetlab.bus.headers` and pause while circuit
breakers are open (forgetting pauses at a rebalance and re-pausing, like Kafka).

Nothing runs in the background. :meth:`InMemoryBus.drain` delivers every record that can
be delivered *now*; :meth:`InMemoryBus.settle` also moves a :class:`ManualClock` forward to
the next due time (a backoff ending, a not-before time, a breaker's alive check) until
nothing is left to do or a time budget is spent. So unit tests and E08 are deterministic.

Everything the bus does is an :class:`~offsetlab.bus.interface.Activity` in
``bus.activity`` (and sent to listeners): a timeline without pandas.

Like a Kafka consumer, a member forgets its pauses, pending seeks and in-place retry
counts at a rebalance (the record is redelivered from the committed position; an in-place
retry count starts again, a header-carried attempt does not). The bus is single-threaded:
call it from one thread (handlers run inside ``drain``/``settle``, and may publish).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from offsetlab.bus.breaker import BreakerTransition, CircuitBreaker
from offsetlab.bus.core import make_activity
from offsetlab.bus.errors import BusStateError, ConfigError, PublishError
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.headers import Headers
from offsetlab.bus.interface import (
    Activity,
    ActivityKind,
    ActivityListener,
    EventBus,
    Receipt,
    SubscriptionSpec,
    SubscriptionState,
)
from offsetlab.bus.memory_log import Faults, ManualClock, StoredRecord, partition_for_key
from offsetlab.bus.memory_subscription import MemorySubscription
from offsetlab.bus.types import TopicPartition

__all__ = ["InMemoryBus", "MemorySubscription", "ManualClock", "StoredRecord"]


class InMemoryBus(EventBus):
    """The event bus on in-process logs; see the module docstring."""

    def __init__(
        self,
        registry: EventRegistry,
        *,
        clock: Callable[[], float] | None = None,
        default_partitions: int = 3,
        include_stacktrace: bool = False,
        name: str = "memory",
    ) -> None:
        if not isinstance(default_partitions, int) or default_partitions < 1:
            raise ConfigError(f"InMemoryBus.default_partitions={default_partitions!r} must be >= 1")
        self.registry = registry
        self.clock: Callable[[], float] = clock if clock is not None else ManualClock()
        self.default_partitions = default_partitions
        self.include_stacktrace = include_stacktrace
        self.name = name
        self.activity: list[Activity] = []
        self._listeners: list[ActivityListener] = []
        self._logs: dict[str, list[list[StoredRecord]]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._subscriptions: list[MemorySubscription] = []
        self._members: dict[str, list[MemorySubscription]] = {}  # group -> running, join order
        self._round_robin: dict[str, itertools.count[int]] = {}
        self._faults = Faults()
        self._watched_breakers: set[int] = set()
        self._draining = False
        self._closed = False

    # -- topics ------------------------------------------------------------------------

    def create_topic(self, topic: str, partitions: int | None = None) -> None:
        """Create ``topic`` (no-op if it exists); ``partitions`` defaults to the bus default."""
        count = partitions or self.default_partitions
        if topic not in self._logs:
            self._logs[topic] = [[] for _ in range(count)]

    def topics(self) -> tuple[str, ...]:
        return tuple(sorted(self._logs))

    def partitions_for(self, topic: str) -> int:
        self.create_topic(topic)
        return len(self._logs[topic])

    def records(self, topic: str) -> list[StoredRecord]:
        """Every record of ``topic``, by partition then offset (empty if no such topic)."""
        return [r for log in self._logs.get(topic, []) for r in log]

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed positions (next offset to read) per partition."""
        return {p: o for (g, t, p), o in self._committed.items() if g == group and t == topic}

    def lag(self, group: str, topic: str) -> int:
        """Records of ``topic`` the group has not settled yet."""
        logs = self._logs.get(topic, [])
        return sum(len(log) - self._committed.get((group, topic, p), 0) for p, log in enumerate(logs))

    # -- faults ------------------------------------------------------------------------

    def fail_next(self, count: int = 1, *, topic: str | None = None,
                  producer: str = "publish") -> None:
        """Make the next ``count`` produces fail with ``PublishError``.

        ``producer`` is ``"publish"`` (``publish``/``publish_raw``) or ``"reproduce"`` (retry
        copies and dead letters, the Kafka bus's second producer); ``topic`` limits the fault
        to one topic.
        """
        self._faults.add(count, topic=topic, producer=producer)

    # -- publishing --------------------------------------------------------------------

    def publish(self, event: Event) -> Receipt:
        self._check_open("publish")
        encoded = self.registry.encode(event)
        return self._produce(
            encoded.topic, encoded.key, encoded.value, encoded.headers, producer="publish",
            event=event,
        )

    def publish_raw(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> Receipt:
        self._check_open("publish_raw")
        return self._produce(topic, key, value, tuple(headers), producer="publish")

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        *,
        producer: str,
        event: Event | None = None,
        partition: int | None = None,
    ) -> Receipt:
        if self._faults.take(producer, topic):
            if producer == "publish":  # a failed re-produce is recorded by the core
                self._record(ActivityKind.PUBLISH_FAILED, topic=topic, key=key, event=event,
                             detail="publish producer: injected fault")
            raise PublishError(
                f"{producer} to topic {topic!r} was not acknowledged (bootstrap servers: "
                f"memory://{self.name}, timeout: injected fault from fail_next()); "
                "the record was not written"
            )
        self.create_topic(topic)
        logs = self._logs[topic]
        if partition is None or partition >= len(logs):
            if key is not None:
                partition = partition_for_key(key, len(logs))
            else:
                counter = self._round_robin.setdefault(topic, itertools.count())
                partition = next(counter) % len(logs)
        log = logs[partition]
        record = StoredRecord(
            topic=topic, partition=partition, offset=len(log), key=key, value=value,
            headers=headers, timestamp_ms=round(self.clock() * 1000),
        )
        log.append(record)
        if producer == "publish":
            self._record(ActivityKind.PUBLISHED, topic=topic, partition=partition,
                         offset=record.offset, key=key, event=event)
        return Receipt(topic, partition, record.offset)

    # -- subscriptions -----------------------------------------------------------------

    def _subscribe(self, spec: SubscriptionSpec) -> MemorySubscription:
        self._check_open("subscribe")
        sub = MemorySubscription(self, spec, self._record)
        self._subscriptions.append(sub)
        for topic in spec.topics:
            self.create_topic(topic, self.partitions_for(spec.topic))
        for breaker in spec.depends_on:
            self._watch_breaker(breaker)
        return sub

    @property
    def subscriptions(self) -> tuple[MemorySubscription, ...]:
        return tuple(self._subscriptions)

    def _watch_breaker(self, breaker: CircuitBreaker) -> None:
        if id(breaker) in self._watched_breakers:
            return
        self._watched_breakers.add(id(breaker))

        def on_transition(t: BreakerTransition) -> None:
            self._record(ActivityKind.BREAKER, detail=f"{t.breaker}: {t.previous.value} -> "
                         f"{t.state.value} ({t.reason})")

        breaker.add_listener(on_transition)

    def _join(self, sub: MemorySubscription) -> None:
        self._check_open("start")
        members = self._members.setdefault(sub.spec.group, [])
        members.append(sub)
        self._rebalance(sub.spec.group, joined=sub)

    def _leave(self, sub: MemorySubscription) -> None:
        members = self._members.get(sub.spec.group, [])
        if sub in members:
            members.remove(sub)
        self._record(ActivityKind.LEFT, sub=sub)
        sub.assignment = ()
        self._rebalance(sub.spec.group, joined=None)

    def _rebalance(self, group: str, *, joined: MemorySubscription | None) -> None:
        """Reassign the group's partitions round-robin over its members, per topic."""
        members = self._members.get(group, [])
        new: dict[int, list[TopicPartition]] = {id(m): [] for m in members}
        topics = sorted({t for m in members for t in m.spec.topics})
        for topic in topics:
            takers = [m for m in members if topic in m.spec.topics]
            for p in range(self.partitions_for(topic)):
                new[id(takers[p % len(takers)])].append(TopicPartition(topic, p))
        for member in members:
            member.assignment = tuple(new[id(member)])
            member.forget_member_state()
            kind = ActivityKind.JOINED if member is joined else ActivityKind.REBALANCED
            self._record(kind, sub=member, detail="assigned " + ", ".join(
                f"{t}[{p}]" for t, p in member.assignment))
            if member is not joined:
                member.sync_pause("re-paused after rebalance: breaker open")

    # -- delivering --------------------------------------------------------------------

    def drain(self, max_deliveries: int = 100_000) -> int:
        """Deliver every record deliverable now (one per partition per pass, fairly).

        Returns the number of records handled (delivered or skipped). Raises
        ``BusStateError`` if ``max_deliveries`` is reached (a loop that never settles).
        """
        if self._draining:
            raise BusStateError("drain()/settle() called from inside a handler; return instead")
        self._draining = True
        try:
            handled = 0
            while True:
                progressed = False
                for sub in list(self._subscriptions):
                    if sub.state is not SubscriptionState.RUNNING:
                        continue
                    for breaker in sub.spec.depends_on:
                        breaker.tick()
                    for tp in sub.assignment:
                        if sub.state is not SubscriptionState.RUNNING:
                            break
                        if self._deliver_one(sub, tp):
                            handled += 1
                            progressed = True
                            if handled >= max_deliveries:
                                raise BusStateError(
                                    f"drain() handled {handled} records without settling; "
                                    "a retry loop with no end? raise max_deliveries if not"
                                )
                if not progressed:
                    return handled
        finally:
            self._draining = False

    def next_wakeup(self) -> float | None:
        """The earliest future time at which something becomes deliverable or probed."""
        now = self.clock()
        times: list[float] = []
        for sub in self._subscriptions:
            if sub.state is not SubscriptionState.RUNNING:
                continue
            times.extend(t for t in sub.waiting().values() if t > now)
            for breaker in sub.spec.depends_on:
                if breaker.next_probe_at is not None:
                    times.append(breaker.next_probe_at)
        return min(times) if times else None

    def settle(self, max_time_s: float = 3600.0, max_deliveries: int = 100_000) -> int:
        """``drain``, then move the ManualClock to the next wake-up, until quiet.

        Stops when nothing is waiting, or when the next wake-up is more than ``max_time_s``
        (clock seconds) after the call. Returns the records handled.
        """
        if not isinstance(self.clock, ManualClock):
            raise BusStateError(
                "settle() moves time and needs InMemoryBus(clock=ManualClock()); with a real "
                "clock, call drain() in a loop"
            )
        deadline = self.clock() + max_time_s
        handled = 0
        while True:
            handled += self.drain(max_deliveries=max_deliveries - handled)
            wake = self.next_wakeup()
            if wake is None or wake > deadline:
                return handled
            self.clock.advance_to(wake)

    def _deliver_one(self, sub: MemorySubscription, tp: TopicPartition) -> bool:
        if not sub.deliverable(tp):
            return False
        topic, partition = tp
        log = self._logs[topic][partition]
        position = self._committed.get((sub.spec.group, topic, partition), 0)
        if position >= len(log):
            return False
        return sub.core.handle((log[position],), sub.port) > 0

    def _commit(self, group: str, record: StoredRecord) -> None:
        self._committed[(group, record.topic, record.partition)] = record.offset + 1

    # -- activity ----------------------------------------------------------------------

    def add_listener(self, listener: ActivityListener) -> None:
        self._listeners.append(listener)

    def activities(self, kind: ActivityKind | None = None) -> list[Activity]:
        return [a for a in self.activity if kind is None or a.kind is kind]

    def _record(self, kind: ActivityKind, *, sub: MemorySubscription | None = None,
                spec: SubscriptionSpec | None = None, **fields: Any) -> None:
        if sub is not None:
            spec = sub.spec
        activity = make_activity(kind, self.clock(), spec=spec, **fields)
        self.activity.append(activity)
        for listener in list(self._listeners):
            listener(activity)

    # -- lifecycle ---------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise BusStateError(f"{what}() on a closed InMemoryBus {self.name!r}; make a new bus")

    def close(self) -> None:
        if self._closed:
            return
        for sub in self._subscriptions:
            sub.stop()
        self._closed = True
