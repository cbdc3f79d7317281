"""Fakes of the service's dependencies, settable and recording (no mocks).

:class:`BackupJobDependency` is the backup-job service the allowed check calls. Its mode
can be changed at any time (from a test or a notebook cell):

- ``healthy()``: answers with the job's data;
- ``slow(seconds)``: takes ``seconds`` (through the injected ``sleep``); beyond its
  ``timeout_s`` the call raises ``TimeoutError`` after waiting ``timeout_s``;
- ``down()``: raises ``ConnectionError`` at once;
- ``bad_data()``: answers with an object missing fields (the use case's validation raises
  ``ValueError``: fatal, never retried).

``is_alive()`` is the circuit breaker's alive check. ``calls`` records every call.
:class:`BackupInterface` is where allowed requests are sent; it records every call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["DependencyMode", "DependencyCall", "BackupJobDependency", "BackupInterface"]


class DependencyMode(StrEnum):
    HEALTHY = "healthy"
    SLOW = "slow"
    DOWN = "down"
    BAD_DATA = "bad_data"


@dataclass(frozen=True)
class DependencyCall:
    backup_job_id: str
    mode: DependencyMode
    result: str  # "ok" | exception class name | "bad_data"


class BackupJobDependency:
    """The backup-job service fake; see the module docstring."""

    def __init__(
        self,
        jobs: Mapping[str, Mapping[str, object]] | None = None,
        *,
        timeout_s: float = 1.0,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.jobs: dict[str, dict[str, object]] = {k: dict(v) for k, v in (jobs or {}).items()}
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._lock = threading.Lock()
        self.mode = DependencyMode.HEALTHY
        self.slow_s = 0.0
        self.calls: list[DependencyCall] = []

    # -- modes -------------------------------------------------------------------------

    def healthy(self) -> None:
        self.mode = DependencyMode.HEALTHY

    def slow(self, seconds: float) -> None:
        self.mode, self.slow_s = DependencyMode.SLOW, seconds

    def down(self) -> None:
        self.mode = DependencyMode.DOWN

    def bad_data(self) -> None:
        self.mode = DependencyMode.BAD_DATA

    def add_job(self, backup_job_id: str, *, allows_on_demand: bool = True,
                storage_provider: str = "s3") -> None:
        self.jobs[backup_job_id] = {
            "backupJobId": backup_job_id,
            "allowsOnDemand": allows_on_demand,
            "storageProvider": storage_provider,
        }

    # -- the dependency ----------------------------------------------------------------

    def get_backup_job(self, backup_job_id: str) -> dict[str, object]:
        mode = self.mode
        try:
            if mode is DependencyMode.DOWN:
                raise ConnectionError(f"backup job service unreachable (asked for {backup_job_id})")
            if mode is DependencyMode.SLOW:
                self._sleep(min(self.slow_s, self.timeout_s))
                if self.slow_s > self.timeout_s:
                    raise TimeoutError(
                        f"backup job service did not answer within {self.timeout_s:g}s"
                    )
            if mode is DependencyMode.BAD_DATA:
                self._record(backup_job_id, mode, "bad_data")
                return {"backupJobId": backup_job_id, "allowsOnDemand": "maybe"}
            job = self.jobs.get(backup_job_id)
            if job is None:
                raise KeyError(f"no backup job {backup_job_id!r}")
        except Exception as exc:
            self._record(backup_job_id, mode, type(exc).__name__)
            raise
        self._record(backup_job_id, mode, "ok")
        return dict(job)

    def is_alive(self) -> bool:
        """Alive check for a circuit breaker: answers in time (bad data counts as alive)."""
        return self.mode is not DependencyMode.DOWN and not (
            self.mode is DependencyMode.SLOW and self.slow_s > self.timeout_s
        )

    def _record(self, backup_job_id: str, mode: DependencyMode, result: str) -> None:
        with self._lock:
            self.calls.append(DependencyCall(backup_job_id, mode, result))


class BackupInterface:
    """Where allowed requests are sent: each call starts a backup (``started``: every call,
    in order, duplicates included); ``sent`` lists each request id once (the interface takes
    the request id as an idempotency key)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.started: list[str] = []
        self._lock = threading.Lock()

    def send(self, request_id: str, storage_provider: str) -> None:
        with self._lock:
            self.started.append(request_id)
            if request_id not in self.sent:
                self.sent.append(request_id)
