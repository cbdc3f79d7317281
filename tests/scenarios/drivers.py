"""Drivers: what a scenario needs from a run besides the bus.

``Driver`` is the protocol; :class:`MemoryDriver` runs scenarios on the in-memory bus with
a manual clock (simulated seconds, deterministic). A Kafka driver implements the same
protocol with real time: ``sleep``/``idle`` sleep, ``wait_until`` polls the predicate until
its timeout, ``records`` reads a topic from the beginning, ``name`` adds a uuid.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from kafka import KafkaConsumer, TopicPartition
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


class KafkaDriver:
    """Runs scenarios on a Kafka bus in real time (the bus is built by the caller).

    ``records(topic)`` reads the topic from the beginning to its current end with a
    group-less consumer (it never auto-creates the topic). The clock is epoch seconds, the
    same time base as the not-before headers.
    """

    def __init__(self, bus: EventBus, *, bootstrap_servers: str, run_id: str | None = None,
                 poll_s: float = 0.05, read_timeout_s: float = 10.0) -> None:
        self.bus = bus
        self.bootstrap_servers = bootstrap_servers
        self.run_id = run_id or uuid.uuid4().hex[:10]
        self.clock: Callable[[], float] = time.time
        self.poll_s = poll_s
        self.read_timeout_s = read_timeout_s

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
                raise AssertionError(f"waited {timeout_s}s for {what}")
            time.sleep(self.poll_s)

    def records(self, topic: str) -> list[Any]:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                 enable_auto_commit=False, allow_auto_create_topics=False)
        try:
            consumer.topics()  # refresh metadata: an unknown topic has no partitions
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                return []
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            end = consumer.end_offsets(tps)
            out: list[Any] = []
            deadline = time.monotonic() + self.read_timeout_s
            while any(consumer.position(tp) < end[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not read {topic} to its end in time")
                for batch in consumer.poll(timeout_ms=200).values():
                    out.extend(batch)
            return sorted(out, key=lambda r: (r.partition, r.offset))
        finally:
            consumer.close()
