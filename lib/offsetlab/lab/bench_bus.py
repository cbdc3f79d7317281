"""The bus sides of ``offsetlab bench``: the benchmark's event, and the bus's publish and
consume on either client.

- publish: ``KafkaBus.publish_many(events)`` (encode, send all, wait for every
  acknowledgement); the events are built before the clock starts, as the raw sides' data is;
- consume: ``subscribe(BenchEvent, handler)`` with a no-op handler (the bus decodes the
  envelope, dispatches, settles, commits once per batch); the clock runs from the first
  event handled to the last, so the group join and the first fetch are outside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from offsetlab.bus.events import Event

from .bench_raw import Clock, Timing

__all__ = ["BenchEvent", "produce_bus", "consume_bus"]


@dataclass(frozen=True, kw_only=True)
class BenchEvent(Event):
    """A benchmark event: a sequence number and a short text (about 200 bytes enveloped)."""

    topic: ClassVar[str] = "bench.events"
    seq: int
    note: str = "offsetlab bench"

    @property
    def key(self) -> str:
        return str(self.seq)


def produce_bus(bus: Any, events: list[BenchEvent]) -> Timing:
    """Time of ``bus.publish_many(events)`` (encode, send all, wait all). One event is
    published first, outside the clock (producer and metadata)."""
    bus.publish_many([BenchEvent(seq=0)])
    wall0, cpu0 = time.perf_counter(), time.process_time()
    bus.publish_many(events)
    return Timing.since(wall0, cpu0)


def consume_bus(bus: Any, group: str, n: int, *, timeout_s: float) -> Timing:
    """Time between the first and the n-th event handled by a no-op bus handler."""
    clock = Clock(n)

    def handler(event: Event) -> None:
        clock.tick()

    sub = bus.subscribe(BenchEvent, handler, group=group)
    try:
        sub.run(timeout=min(120.0, timeout_s))
        if not clock.done.wait(timeout_s):
            raise TimeoutError(f"bus subscription {group} handled {clock.count} of {n} events "
                               f"in {timeout_s:.0f} s")
    finally:
        sub.stop(timeout=30)
    return clock.timing
