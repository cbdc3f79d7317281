"""A subscription on the in-memory bus, and its port to the subscription core.

:class:`MemorySubscription` is a group member of :class:`~offsetlab.bus.memory.InMemoryBus`:
an assignment, and the member state a Kafka consumer has (kept by its
:class:`~offsetlab.bus.core.SubscriptionCore`: in-place attempt counts, due times, whether
an open breaker holds it). The bus delivers one record at a time; the core carries out its
verdict through :class:`_MemoryPort`, which commits at once (the committed position is the
fetch position here, so a seek back is "don't commit") and produces copies synchronously.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from offsetlab.bus.breaker import BreakerState, BreakerTransition
from offsetlab.bus.core import SubscriptionContext, SubscriptionCore
from offsetlab.bus.errors import BusStateError, PublishError
from offsetlab.bus.interface import (
    Receipt,
    Subscription,
    SubscriptionSpec,
    SubscriptionState,
)
from offsetlab.bus.memory_log import StoredRecord
from offsetlab.bus.ports import CopyHandle, Headers
from offsetlab.bus.types import TopicPartition

if TYPE_CHECKING:
    from offsetlab.bus.memory import InMemoryBus

__all__ = ["MemorySubscription"]


class _MemoryCopies:
    """Retry copies and dead letters of one subscription: written at once (a
    ``PublishError`` from an injected fault), target topics created with the main topic's
    partition count."""

    def __init__(self, bus: InMemoryBus, spec: SubscriptionSpec) -> None:
        self._bus = bus
        self._spec = spec

    def partitions(self, topic: str) -> frozenset[int]:
        self._bus.create_topic(topic, self._bus.partitions_for(self._spec.topic))
        return frozenset(range(self._bus.partitions_for(topic)))

    def send_copy(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
                  partition: int | None) -> CopyHandle:
        self.partitions(topic)
        return self._bus._produce(topic, key, value, tuple(headers), producer="reproduce",
                                  partition=partition)

    def wait_all(self, items: Sequence[tuple[str, CopyHandle]]) -> list[Receipt | PublishError]:
        return [handle for _, handle in items]


class _MemoryPort:
    """The core's view of one in-memory delivery."""

    def __init__(self, sub: MemorySubscription) -> None:
        self._sub = sub

    def settle(self, record: StoredRecord) -> None:
        self._sub._bus._commit(self._sub.spec.group, record)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Nothing to do: the next delivery starts at the committed position."""

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        """Nothing to do: the bus asks the core before delivering (waiting, breaker)."""

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        """As :meth:`pause`."""

    def paused(self) -> frozenset[TopicPartition]:
        return frozenset()

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._sub.assignment)

    def stopping(self) -> bool:
        return self._sub.state is not SubscriptionState.RUNNING


class MemorySubscription(Subscription):
    """A subscription on the in-memory bus; its member state mirrors a Kafka consumer's."""

    def __init__(self, bus: InMemoryBus, spec: SubscriptionSpec,
                 report: Callable[..., None]) -> None:
        self._bus = bus
        self.spec = spec
        self._state = SubscriptionState.CREATED
        self.assignment: tuple[TopicPartition, ...] = ()
        self.core = SubscriptionCore(spec, SubscriptionContext(
            registry=bus.registry, report=report, listening=lambda: True,
            copies=_MemoryCopies(bus, spec), now=bus.clock,
            include_stacktrace=bus.include_stacktrace))
        self.port = _MemoryPort(self)
        self._removers: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"MemorySubscription({self.spec.name!r}, {self._state.value})"

    @property
    def state(self) -> SubscriptionState:
        return self._state

    @property
    def breaker_paused(self) -> bool:
        return self.core.breaker_paused

    def start(self) -> None:
        """Join the group now (the in-memory join is immediate); deliveries happen in drain()."""
        if self._state is SubscriptionState.RUNNING:
            return
        if self._state is SubscriptionState.STOPPED:
            raise BusStateError(
                f"subscription {self.spec.name!r} was stopped; call bus.subscribe() again"
            )
        self._bus._join(self)
        self._state = SubscriptionState.RUNNING
        for breaker in self.spec.depends_on:
            self._removers.append(breaker.add_listener(self._on_breaker))
        self.sync_pause("breaker open at start")

    def run(self, timeout: float | None = None) -> None:
        """Same as :meth:`start` here: the in-memory join cannot fail or take time."""
        self.start()

    def stop(self, timeout: float | None = None) -> None:
        if self._state is not SubscriptionState.RUNNING:
            self._state = SubscriptionState.STOPPED
            return
        for remove in self._removers:
            remove()
        self._removers.clear()
        self._state = SubscriptionState.STOPPED
        self._bus._leave(self)

    def waiting(self) -> dict[TopicPartition, float]:
        """Partitions paused until a due time (backoff or not-before), with that time."""
        return dict(self.core.waiting)

    # -- bus-side helpers --------------------------------------------------------------

    def any_breaker_open(self) -> bool:
        return any(b.state is BreakerState.OPEN for b in self.spec.depends_on)

    def sync_pause(self, why: str) -> None:
        """Pause while a dependency's breaker is open, resume when none is."""
        open_ = self.any_breaker_open()
        if open_ != self.core.breaker_paused:
            self.core.sync_breakers(self.port, why)

    def forget_member_state(self) -> None:
        """What a Kafka consumer loses at a rebalance: pauses, pending seeks, waits."""
        self.core.breaker_paused = False
        self.core.forget(list(self.core.waiting) + list(self.core.in_place))

    def deliverable(self, tp: TopicPartition) -> bool:
        """False while a breaker holds the member or ``tp`` waits for a due time (a due
        time that has come is resumed, and reported, here)."""
        core = self.core
        if core.breaker_paused:
            return False
        due = core.waiting.get(tp)
        if due is not None:
            if due > self._bus.clock():
                return False
            core.resume_due(self.port, only=tp)
        return True

    def _on_breaker(self, transition: BreakerTransition) -> None:
        if self._state is SubscriptionState.RUNNING:
            self.sync_pause(
                f"breaker {transition.breaker} {transition.previous.value} -> "
                f"{transition.state.value}"
            )
