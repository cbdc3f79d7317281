"""The example domain: the seed's backup-request service in miniature.

A request is accepted at the edge (``BackupRequestAccepted``), received and stored
(``BackupRequestCreated``), checked against the backup-job service, a dependency that can
be made slow, down or return bad data (``BackupRequestAllowed`` / ``NotAllowed``), and
sent to the backup interface (``BackupRequestSent``). ``bootstrap(bus)`` wires it onto any
:class:`offsetlab.bus.interface.EventBus`. This package may import ``offsetlab.bus``; the
bus never imports it.
"""

from offsetlab.backups.bootstrap import BackupService, bootstrap
from offsetlab.backups.dependencies import BackupInterface, BackupJobDependency, DependencyMode
from offsetlab.backups.events import (
    BACKUP_EVENTS,
    BackupRequestAccepted,
    BackupRequestAllowed,
    BackupRequestCreated,
    BackupRequestNotAllowed,
    BackupRequestSent,
    backup_registry,
)
from offsetlab.backups.model import BackupJob, BackupRequest, InvalidTransition, RequestStatus
from offsetlab.backups.repository import BackupRequestRepository, RequestSnapshot

__all__ = [
    "BACKUP_EVENTS",
    "BackupInterface",
    "BackupJob",
    "BackupJobDependency",
    "BackupRequest",
    "BackupRequestAccepted",
    "BackupRequestAllowed",
    "BackupRequestCreated",
    "BackupRequestNotAllowed",
    "BackupRequestRepository",
    "BackupRequestSent",
    "BackupService",
    "DependencyMode",
    "InvalidTransition",
    "RequestSnapshot",
    "RequestStatus",
    "backup_registry",
    "bootstrap",
]
