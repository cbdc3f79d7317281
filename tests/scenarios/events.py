"""Events used by the generic bus scenarios."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from offsetlab.backups.events import BACKUP_EVENTS
from offsetlab.bus.events import Event, EventRegistry


@dataclass(frozen=True, kw_only=True)
class Ping(Event):
    """A numbered event with a chosen key."""

    topic: ClassVar[str] = "scenarios.pings"
    n: int
    k: str = "k"

    @property
    def key(self) -> str:
        return self.k


@dataclass(frozen=True, kw_only=True)
class Pong(Event):
    """A second event type on the *same* topic as Ping (subscription filtering)."""

    topic: ClassVar[str] = "scenarios.pings"
    n: int


def scenario_registry(topic_prefix: str = "") -> EventRegistry:
    """Ping, Pong and the backup events, under ``topic_prefix``."""
    return EventRegistry((Ping, Pong, *BACKUP_EVENTS), topic_prefix=topic_prefix)
