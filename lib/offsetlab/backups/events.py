"""The backup-request events (fields only; keyed by request id so one request's events
stay in order on one partition).

One topic per event type, as in the seed (``topic_prefix`` of the bus's registry makes them
unique per test run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from offsetlab.bus.events import Event, EventRegistry

__all__ = [
    "BackupRequestEvent",
    "BackupRequestAccepted",
    "BackupRequestCreated",
    "BackupRequestAllowed",
    "BackupRequestNotAllowed",
    "BackupRequestSent",
    "BACKUP_EVENTS",
    "backup_registry",
]


@dataclass(frozen=True, kw_only=True)
class BackupRequestEvent(Event):
    """Base of the backup-request events: every one names its request."""

    request_id: str

    @property
    def key(self) -> str:
        return self.request_id


@dataclass(frozen=True, kw_only=True)
class BackupRequestAccepted(BackupRequestEvent):
    """A request passed validation at the edge and was queued (not stored yet)."""

    topic: ClassVar[str] = "backups.request-accepted"
    backup_job_id: str
    data_date: str
    requester: str


@dataclass(frozen=True, kw_only=True)
class BackupRequestCreated(BackupRequestEvent):
    """The request was received and stored."""

    topic: ClassVar[str] = "backups.request-created"
    backup_job_id: str


@dataclass(frozen=True, kw_only=True)
class BackupRequestAllowed(BackupRequestEvent):
    """The backup job allows on-demand backups; the request may be sent."""

    topic: ClassVar[str] = "backups.request-allowed"
    storage_provider: str


@dataclass(frozen=True, kw_only=True)
class BackupRequestNotAllowed(BackupRequestEvent):
    """The backup job does not allow this request (a final state)."""

    topic: ClassVar[str] = "backups.request-not-allowed"
    why: str


@dataclass(frozen=True, kw_only=True)
class BackupRequestSent(BackupRequestEvent):
    """The request was handed to the backup interface (a final state)."""

    topic: ClassVar[str] = "backups.request-sent"
    storage_provider: str


BACKUP_EVENTS: tuple[type[Event], ...] = (
    BackupRequestAccepted,
    BackupRequestCreated,
    BackupRequestAllowed,
    BackupRequestNotAllowed,
    BackupRequestSent,
)


def backup_registry(topic_prefix: str = "") -> EventRegistry:
    """An :class:`EventRegistry` with every backup-request event registered."""
    return EventRegistry(BACKUP_EVENTS, topic_prefix=topic_prefix)
