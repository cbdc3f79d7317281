"""The use cases: plain functions taking the event (or command values) and named
dependencies, as in cosmicpython; ``bootstrap`` binds the dependencies.

Every handler is idempotent twice over. ``bootstrap`` wraps each in
:func:`offsetlab.bus.idempotent.idempotent`: an event it finished (returned ``Ok``) is
skipped by its event id, and a duplicate arriving while the first is still running waits
for it. Inside, a redelivered event the wrapper did not skip (the handler raised, e.g. its
publish was not acknowledged, so nothing was marked) finds the request already moved and
only publishes what is still pending on the aggregate.

What stays at-least-once: ``send_to_interface`` killed after ``interface.send`` and before
``repository.save`` leaves neither the status nor the mark written, so the redelivery sends
again; the backup interface takes the request id as its idempotency key for that window.
"""

from __future__ import annotations

from offsetlab.backups.dependencies import BackupInterface, BackupJobDependency
from offsetlab.backups.events import (
    BackupRequestAccepted,
    BackupRequestAllowed,
    BackupRequestCreated,
)
from offsetlab.backups.model import BackupJob, BackupRequest, RequestStatus
from offsetlab.backups.repository import BackupRequestRepository
from offsetlab.bus.breaker import CircuitBreaker
from offsetlab.bus.interface import EventBus
from offsetlab.bus.outcomes import OK, Outcome, Reject

__all__ = [
    "accept_backup_request",
    "receive_backup_request",
    "check_backup_allowed",
    "send_to_interface",
]


def accept_backup_request(
    *, request_id: str, backup_job_id: str, data_date: str, requester: str, bus: EventBus
) -> BackupRequest:
    """Validate a request at the edge and publish ``BackupRequestAccepted`` (not stored).

    Raises ``AggregatePublishError`` if the broker did not acknowledge; the returned
    aggregate is not returned then, and the caller may simply retry the call.
    """
    request = BackupRequest.accept(request_id=request_id, backup_job_id=backup_job_id,
                                   data_date=data_date, requester=requester)
    bus.publish_for_aggregate(request)
    return request


def receive_backup_request(
    event: BackupRequestAccepted, *, repository: BackupRequestRepository, bus: EventBus
) -> Outcome:
    """Store the request (status received) and publish ``BackupRequestCreated``."""
    request = repository.get(event.request_id)
    if request is None:
        request = BackupRequest.receive(event)
        repository.save(request)
    bus.publish_for_aggregate(request)
    return OK


def check_backup_allowed(
    event: BackupRequestCreated,
    *,
    repository: BackupRequestRepository,
    backup_jobs: BackupJobDependency,
    breaker: CircuitBreaker | None,
    bus: EventBus,
) -> Outcome:
    """Ask the backup-job service whether the request is allowed; publish the answer.

    The call goes through the breaker (fails fast with ``DependencyUnavailable`` while it
    is open). Connection errors and timeouts are retriable, bad data (``ValueError``) is
    fatal, by the subscription's error classifier.
    """
    request = repository.get(event.request_id)
    if request is None:
        return Reject(reason=f"request {event.request_id} was never stored")
    if request.status is RequestStatus.RECEIVED:
        if breaker is not None:
            answer = breaker.call(backup_jobs.get_backup_job, request.backup_job_id)
        else:
            answer = backup_jobs.get_backup_job(request.backup_job_id)
        request.decide_allowed(BackupJob.from_mapping(answer))
        repository.save(request)
    bus.publish_for_aggregate(request)
    return OK


def send_to_interface(
    event: BackupRequestAllowed,
    *,
    repository: BackupRequestRepository,
    interface: BackupInterface,
    bus: EventBus,
) -> Outcome:
    """Hand an allowed request to the backup interface and publish ``BackupRequestSent``."""
    request = repository.get(event.request_id)
    if request is None:
        return Reject(reason=f"request {event.request_id} was never stored")
    if request.status is RequestStatus.ALLOWED:
        assert request.storage_provider is not None
        interface.send(request.request_id, request.storage_provider)
        request.mark_sent()
        repository.save(request)
    bus.publish_for_aggregate(request)
    return OK
