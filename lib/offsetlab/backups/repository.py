"""In-memory repository of backup requests (the seed's Prisma repository, in miniature).

It stores aggregate objects as they are, pending events included, so a use case that
saved an aggregate and then failed to publish finds the events still pending when the
message is redelivered (and publishes them then).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from offsetlab.backups.model import BackupRequest

__all__ = ["BackupRequestRepository", "RequestSnapshot"]


@dataclass(frozen=True)
class RequestSnapshot:
    """A request's comparable state (for "memory and Kafka end in the same state")."""

    request_id: str
    status: str
    backup_job_id: str
    storage_provider: str | None
    pending_events: int


class BackupRequestRepository:
    """Thread-safe dict of request id -> aggregate; records every save."""

    def __init__(self) -> None:
        self._items: dict[str, BackupRequest] = {}
        self._lock = threading.Lock()
        self.saves: list[tuple[str, str]] = []  # (request_id, status) per save, in order

    def get(self, request_id: str) -> BackupRequest | None:
        with self._lock:
            return self._items.get(request_id)

    def save(self, request: BackupRequest) -> None:
        with self._lock:
            self._items[request.request_id] = request
            self.saves.append((request.request_id, request.status.value))

    def all(self) -> list[BackupRequest]:
        with self._lock:
            return sorted(self._items.values(), key=lambda r: r.request_id)

    def snapshot(self) -> dict[str, RequestSnapshot]:
        """Comparable state of every request, by id."""
        return {
            r.request_id: RequestSnapshot(r.request_id, r.status.value, r.backup_job_id,
                                          r.storage_provider, len(r.pending_events))
            for r in self.all()
        }
