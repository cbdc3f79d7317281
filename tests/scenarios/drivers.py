"""Drivers: what a scenario needs from a run besides the bus.

``Driver`` is the protocol; :class:`MemoryDriver` runs scenarios on the in-memory bus with
a manual clock (simulated seconds, deterministic). A Kafka driver implements the same
protocol with real time: ``sleep``/``idle`` sleep, ``wait_until`` polls the predicate until
its timeout, ``records`` reads a topic from the beginning, ``name`` adds a uuid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from offsetlab.bus.events import EventRegistry
from offsetlab.bus.interface import EventBus
from offsetlab.bus.memory import InMemoryBus, ManualClock

from scenarios.events import scenario_registry


class RecordLike(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any  # sequence of (str, bytes)


class Driver(Protocol):
    bus: EventBus
    clock: Callable[[], float]

    def name(self, base: str) -> str:
        """A group (or other) name unique to this run."""
        ...

    def sleep(self, seconds: float) -> None:
        """Time passing inside a dependency (a slow call); nothing else happens meanwhile."""
        ...

    def idle(self, seconds: float) -> None:
        """Let the bus work for ``seconds``."""
        ...

    def wait_until(self, predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        """Let the bus work until ``predicate()``; AssertionError naming ``what`` on timeout."""
        ...

    def records(self, topic: str) -> Sequence[RecordLike]:
        """Every record of ``topic`` so far (empty if it does not exist)."""
        ...


class MemoryDriver:
    """Runs scenarios on :class:`InMemoryBus` with a :class:`ManualClock`."""

    def __init__(self, registry: EventRegistry | None = None, *, default_partitions: int = 3):
        self.clock = ManualClock()
        self.bus = InMemoryBus(registry if registry is not None else scenario_registry(),
                               clock=self.clock, default_partitions=default_partitions)

    def name(self, base: str) -> str:
        return base  # a fresh bus per test: names cannot collide

    def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def idle(self, seconds: float) -> None:
        deadline = self.clock() + seconds
        while True:
            self.bus.drain()
            wake = self.bus.next_wakeup()
            if wake is None or wake > deadline:
                self.clock.advance_to(deadline)
                self.bus.drain()
                return
            self.clock.advance_to(wake)

    def wait_until(self, predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        deadline = self.clock() + timeout_s
        while True:
            self.bus.drain()
            if predicate():
                return
            wake = self.bus.next_wakeup()
            if wake is None or wake > deadline:
                raise AssertionError(
                    f"waited {timeout_s}s (simulated) for {what}; bus is idle. Last activity: "
                    f"{[a.kind.value for a in self.bus.activity[-8:]]}"
                )
            self.clock.advance_to(wake)

    def records(self, topic: str) -> list[Any]:
        return list(self.bus.records(topic))
