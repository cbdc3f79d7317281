"""The ``BackupRequest`` aggregate: a request to back up one job's data for one date.

Statuses move ``accepted -> received -> allowed -> sent`` or ``received -> not_allowed``;
each move raises the matching event on the aggregate (published later by the bus's
``publish_for_aggregate``). Moves are idempotent-safe: a move from the wrong status raises
:class:`InvalidTransition`, and the use cases check the status first so redelivered events
do nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from offsetlab.backups.events import (
    BackupRequestAccepted,
    BackupRequestAllowed,
    BackupRequestCreated,
    BackupRequestNotAllowed,
    BackupRequestSent,
)
from offsetlab.bus.aggregate import AggregateRoot

__all__ = ["RequestStatus", "BackupRequest", "BackupJob", "InvalidTransition"]


class RequestStatus(StrEnum):
    ACCEPTED = "accepted"
    """Validated at the edge, published, not stored."""
    RECEIVED = "received"
    """Stored; waiting for the allowed check."""
    ALLOWED = "allowed"
    """The backup job allows it; waiting to be sent."""
    NOT_ALLOWED = "not_allowed"
    """The backup job does not allow it (final)."""
    SENT = "sent"
    """Handed to the backup interface (final)."""


class InvalidTransition(ValueError):
    """A status move the aggregate does not allow (a ValueError: never worth a retry)."""


@dataclass(frozen=True, kw_only=True)
class BackupJob:
    """What the backup-job service says about a job (validated on construction)."""

    backup_job_id: str
    allows_on_demand: bool
    storage_provider: str

    def __post_init__(self) -> None:
        if not self.backup_job_id or not isinstance(self.backup_job_id, str):
            raise ValueError(f"BackupJob.backup_job_id invalid: {self.backup_job_id!r}")
        if not isinstance(self.allows_on_demand, bool):
            raise ValueError(f"BackupJob.allows_on_demand must be bool: {self.allows_on_demand!r}")
        if not self.storage_provider or not isinstance(self.storage_provider, str):
            raise ValueError(f"BackupJob.storage_provider invalid: {self.storage_provider!r}")

    @classmethod
    def from_mapping(cls, data: object) -> BackupJob:
        """Validate the dependency's answer; bad data raises ``ValueError`` (fatal)."""
        if not isinstance(data, dict):
            raise ValueError(f"backup job service answered {type(data).__name__}, expected an object")
        try:
            return cls(
                backup_job_id=data["backupJobId"],
                allows_on_demand=data["allowsOnDemand"],
                storage_provider=data["storageProvider"],
            )
        except KeyError as exc:
            raise ValueError(f"backup job service answer lacks {exc.args[0]!r}: {data!r}") from None


class BackupRequest(AggregateRoot):
    """One backup request and the events its changes raised."""

    def __init__(self, *, request_id: str, backup_job_id: str, data_date: str, requester: str,
                 status: RequestStatus = RequestStatus.ACCEPTED) -> None:
        super().__init__()
        self.request_id = request_id
        self.backup_job_id = backup_job_id
        self.data_date = data_date
        self.requester = requester
        self.status = status
        self.storage_provider: str | None = None
        self.why_not_allowed: str | None = None

    def __repr__(self) -> str:
        return f"BackupRequest({self.request_id!r}, {self.status.value})"

    def aggregate_label(self) -> str:
        return f"BackupRequest {self.request_id}"

    @classmethod
    def accept(cls, *, request_id: str, backup_job_id: str, data_date: str,
               requester: str) -> BackupRequest:
        if not request_id or not backup_job_id or not requester:
            raise ValueError("request_id, backup_job_id and requester are required")
        request = cls(request_id=request_id, backup_job_id=backup_job_id, data_date=data_date,
                      requester=requester)
        request.raise_event(BackupRequestAccepted(
            request_id=request_id, backup_job_id=backup_job_id, data_date=data_date,
            requester=requester))
        return request

    @classmethod
    def receive(cls, accepted: BackupRequestAccepted) -> BackupRequest:
        request = cls(request_id=accepted.request_id, backup_job_id=accepted.backup_job_id,
                      data_date=accepted.data_date, requester=accepted.requester,
                      status=RequestStatus.RECEIVED)
        request.raise_event(BackupRequestCreated(request_id=request.request_id,
                                                 backup_job_id=request.backup_job_id))
        return request

    def _move(self, expected: RequestStatus, to: RequestStatus) -> None:
        if self.status is not expected:
            raise InvalidTransition(
                f"{self.aggregate_label()}: cannot go {self.status.value} -> {to.value}"
            )
        self.status = to

    def decide_allowed(self, job: BackupJob) -> None:
        if job.backup_job_id != self.backup_job_id:
            raise ValueError(
                f"backup job service answered for job {job.backup_job_id!r}, "
                f"asked for {self.backup_job_id!r}"
            )
        if job.allows_on_demand:
            self._move(RequestStatus.RECEIVED, RequestStatus.ALLOWED)
            self.storage_provider = job.storage_provider
            self.raise_event(BackupRequestAllowed(request_id=self.request_id,
                                                  storage_provider=job.storage_provider))
        else:
            why = f"backup job {job.backup_job_id} does not allow on-demand backups"
            self._move(RequestStatus.RECEIVED, RequestStatus.NOT_ALLOWED)
            self.why_not_allowed = why
            self.raise_event(BackupRequestNotAllowed(request_id=self.request_id, why=why))

    def mark_sent(self) -> None:
        self._move(RequestStatus.ALLOWED, RequestStatus.SENT)
        assert self.storage_provider is not None
        self.raise_event(BackupRequestSent(request_id=self.request_id,
                                           storage_provider=self.storage_provider))
