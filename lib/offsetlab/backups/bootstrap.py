"""The composition root: wire the backup service's handlers onto a bus.

Nothing connects at import time; ``bootstrap(bus, ...)`` registers the events with the
bus's registry, makes (real or fake) dependencies, and subscribes one handler per consumer
group (two subscriptions in one group would split the partitions between them):

====================================== ============================== =====================
event                                  handler                        group
====================================== ============================== =====================
``BackupRequestAccepted``              ``receive_backup_request``     ``<prefix>.receive``
``BackupRequestCreated``               ``check_backup_allowed``       ``<prefix>.check-allowed``
``BackupRequestAllowed``               ``send_to_interface``          ``<prefix>.send``
====================================== ============================== =====================

The check-allowed subscription ``depends_on`` the backup-job breaker (pause while open)
unless ``pause_on_open=False``.

Every handler's effect is outside Kafka (a repository write; the send starts a backup), so
each runs through :func:`offsetlab.bus.idempotent.idempotent`, scoped by its group, on one
``processed`` store (an :class:`~offsetlab.bus.idempotent.InMemoryProcessedStore` unless one
is passed): a redelivered event (a member killed after the effect, before its commit; a
retry copy of an event already handled) is skipped by its event id, and two deliveries of
one event at once run the handler once. ``service.handlers`` holds the wrapped handlers
(their ``runs``/``skipped`` counts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from offsetlab.backups.dependencies import BackupInterface, BackupJobDependency
from offsetlab.backups.events import (
    BACKUP_EVENTS,
    BackupRequestAccepted,
    BackupRequestAllowed,
    BackupRequestCreated,
)
from offsetlab.backups.handlers import (
    accept_backup_request,
    check_backup_allowed,
    receive_backup_request,
    send_to_interface,
)
from offsetlab.backups.model import BackupRequest
from offsetlab.backups.repository import BackupRequestRepository
from offsetlab.bus.breaker import CircuitBreaker
from offsetlab.bus.classify import ErrorClassifier
from offsetlab.bus.idempotent import (
    IdempotentHandler,
    InMemoryProcessedStore,
    ProcessedStore,
    idempotent,
)
from offsetlab.bus.interface import EventBus, Subscription
from offsetlab.bus.retry import RetryStrategy

__all__ = ["BackupService", "bootstrap"]


@dataclass
class BackupService:
    """The wired service: its bus, dependencies, and subscriptions by handler name."""

    bus: EventBus
    repository: BackupRequestRepository
    backup_jobs: BackupJobDependency
    interface: BackupInterface
    breaker: CircuitBreaker
    processed: ProcessedStore
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    handlers: dict[str, IdempotentHandler[Any, Any]] = field(default_factory=dict)

    def accept(self, *, request_id: str, backup_job_id: str, data_date: str = "2026-01-01",
               requester: str = "offsetlab") -> BackupRequest:
        """The edge use case: accept a request and publish ``BackupRequestAccepted``."""
        return accept_backup_request(request_id=request_id, backup_job_id=backup_job_id,
                                     data_date=data_date, requester=requester, bus=self.bus)

    def start(self, timeout: float | None = None) -> None:
        """``run`` every subscription (each returns once its group join completed)."""
        for sub in self.subscriptions.values():
            sub.run(timeout)

    def stop(self, timeout: float | None = None) -> None:
        for sub in self.subscriptions.values():
            sub.stop(timeout)


def bootstrap(
    bus: EventBus,
    *,
    repository: BackupRequestRepository | None = None,
    backup_jobs: BackupJobDependency | None = None,
    interface: BackupInterface | None = None,
    breaker: CircuitBreaker | None = None,
    retry: RetryStrategy | None = None,
    classifier: ErrorClassifier | None = None,
    group_prefix: str = "backups",
    pause_on_open: bool = True,
    clock: Callable[[], float] = time.monotonic,
    processed: ProcessedStore | None = None,
    start: bool = False,
) -> BackupService:
    """Wire the service on ``bus``; ``start=True`` also runs the subscriptions.

    ``clock`` is the default breaker's clock (pass the in-memory bus's ``ManualClock``).
    ``retry``/``classifier`` apply to every subscription (bus defaults when ``None``).
    ``processed`` is where the handlers record the events they finished.
    """
    for cls in BACKUP_EVENTS:
        if cls not in bus.registry:
            bus.registry.register(cls)
    repository = repository if repository is not None else BackupRequestRepository()
    backup_jobs = backup_jobs if backup_jobs is not None else BackupJobDependency()
    interface = interface if interface is not None else BackupInterface()
    if breaker is None:
        breaker = CircuitBreaker("backup-jobs", failure_threshold=3, success_threshold=1,
                                 probe_interval_s=5.0, alive_check=backup_jobs.is_alive,
                                 clock=clock)
    processed = processed if processed is not None else InMemoryProcessedStore()
    service = BackupService(bus, repository, backup_jobs, interface, breaker, processed)
    common: dict[str, Any] = {"retry": retry, "classifier": classifier}

    def once(name: str, handler: Callable[[Any], Any]) -> IdempotentHandler[Any, Any]:
        wrapped = idempotent(handler, processed, scope=f"{group_prefix}.{name}")
        service.handlers[name] = wrapped
        return wrapped

    service.subscriptions["receive"] = bus.subscribe(
        BackupRequestAccepted,
        once("receive", partial(receive_backup_request, repository=repository, bus=bus)),
        group=f"{group_prefix}.receive", name="receive", **common,
    )
    service.subscriptions["check-allowed"] = bus.subscribe(
        BackupRequestCreated,
        once("check-allowed", partial(check_backup_allowed, repository=repository,
                                      backup_jobs=backup_jobs, breaker=breaker, bus=bus)),
        group=f"{group_prefix}.check-allowed", name="check-allowed",
        depends_on=(breaker,) if pause_on_open else (), **common,
    )
    service.subscriptions["send"] = bus.subscribe(
        BackupRequestAllowed,
        once("send", partial(send_to_interface, repository=repository, interface=interface,
                             bus=bus)),
        group=f"{group_prefix}.send", name="send", **common,
    )
    if start:
        service.start()
    return service
