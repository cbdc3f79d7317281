"""E08's drivers: a bus and how time passes on it (the story waits through them).

:class:`MemoryDriver` runs :class:`~offsetlab.bus.memory.InMemoryBus` on a
:class:`~offsetlab.bus.memory.ManualClock` (simulated time, deterministic);
:class:`KafkaDriver` runs a Kafka bus in real time and reads topics back from the broker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from offsetlab.bus.interface import EventBus
from offsetlab.bus.memory import InMemoryBus, ManualClock
from offsetlab.lab.raw import read_topic

__all__ = ["Driver", "MemoryDriver", "KafkaDriver"]


class Driver(Protocol):
    """A bus and its time: what the story needs besides the service."""

    bus: EventBus
    clock: Callable[[], float]
    kind: str

    def name(self, base: str) -> str: ...
    def sleep(self, seconds: float) -> None: ...
    def idle(self, seconds: float) -> None: ...
    def wait_until(self, predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None: ...
    def records(self, topic: str) -> Sequence[Any]: ...


class MemoryDriver:
    """The in-memory bus on a :class:`ManualClock`: time moves only when nothing else can
    happen (a backoff, a not-before time, a breaker's next alive check), so a run is
    deterministic and takes no wall-clock time."""

    kind = "memory"

    def __init__(self, bus_factory: Callable[[Callable[[], float]], InMemoryBus]) -> None:
        self.clock = ManualClock()
        self.bus = bus_factory(self.clock)

    def name(self, base: str) -> str:
        return base

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
                raise TimeoutError(f"E08 (memory): waited {timeout_s} s (simulated) for {what}; "
                                   "the bus is idle")
            self.clock.advance_to(wake)

    def records(self, topic: str) -> list[Any]:
        return list(self.bus.records(topic))


class KafkaDriver:
    """A Kafka bus in real time. ``records(topic)`` reads a topic to its end with a
    group-less consumer (it never creates the topic). ``clock`` is the clock the bus stamps
    its activities with (epoch seconds by default: the time base of not-before headers)."""

    kind = "kafka"

    def __init__(self, bus: EventBus, broker: Any, *, clock: Callable[[], float] = time.time,
                 poll_s: float = 0.05) -> None:
        self.bus = bus
        self.broker = broker
        self.clock = clock
        self.poll_s = poll_s
        self.run_id = uuid.uuid4().hex[:8]

    def name(self, base: str) -> str:
        return f"{base}-{self.run_id}"

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait_until(self, predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"E08 (kafka): waited {timeout_s} s for {what}")
            time.sleep(self.poll_s)

    def records(self, topic: str) -> list[Any]:
        return read_topic(self.broker, topic, timeout_s=15)
