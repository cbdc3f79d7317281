"""The events of a chaos run: :class:`ChaosEvent` (what the publisher publishes, ``seq``
0..N-1) and :class:`ChaosProcessed` (what a handler publishes with ``--sink topic``: the
``seq`` it processed), and the registry the run's publisher, workers and readers share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from offsetlab.bus.events import Event, EventRegistry

__all__ = ["ChaosEvent", "ChaosProcessed", "chaos_registry"]


@dataclass(frozen=True, kw_only=True)
class ChaosEvent(Event):
    """The event a chaos run publishes: ``seq`` numbers the run's events 0..N-1.

    Keyed by ``seq``, so the events spread over every partition of the topic."""

    topic: ClassVar[str] = "chaos.events"
    seq: int

    @property
    def key(self) -> str:
        return str(self.seq)


@dataclass(frozen=True, kw_only=True)
class ChaosProcessed(Event):
    """``--sink topic``: a handler processed the chaos event ``seq`` (published by the
    handler through its worker's bus, on its own topic ``<prefix>chaos.processed``)."""

    topic: ClassVar[str] = "chaos.processed"
    seq: int

    @property
    def key(self) -> str:
        return str(self.seq)


def chaos_registry(topic_prefix: str) -> EventRegistry:
    """The registry a run's publisher and workers share (``topic_prefix`` names the run)."""
    return EventRegistry([ChaosEvent, ChaosProcessed], topic_prefix=topic_prefix)
