"""The backup service on a bus: the E08 story in pieces, for any driver.

``make_service`` wires ``offsetlab.backups`` onto the driver's bus with a breaker and a
backup-job fake that take time through the driver (simulated on the in-memory bus, real on
Kafka). ``backups_story`` runs the whole E08 sequence and returns a comparable summary, so
"memory and Kafka end in the same state" is an equality of two summaries.
"""

from __future__ import annotations

from dataclasses import dataclass

from offsetlab.backups import (
    BackupJobDependency,
    BackupRequestCreated,
    BackupService,
    bootstrap,
)
from offsetlab.bus.breaker import BreakerState, CircuitBreaker
from offsetlab.bus.headers import parse_provenance
from offsetlab.bus.retry import (
    Backoff,
    InPlaceRetry,
    MainTopicRetry,
    RetryStrategy,
    dead_letter_topic,
)

from scenarios.drivers import Driver

TIMEOUT_S = 60.0


def make_service(
    driver: Driver,
    *,
    retry: RetryStrategy | None = None,
    failure_threshold: int = 2,
    probe_interval_s: float = 1.0,
    dependency_timeout_s: float = 0.2,
) -> BackupService:
    jobs = BackupJobDependency(timeout_s=dependency_timeout_s, sleep=driver.sleep)
    jobs.add_job("job-on-demand", allows_on_demand=True, storage_provider="s3")
    jobs.add_job("job-scheduled-only", allows_on_demand=False, storage_provider="gcs")
    breaker = CircuitBreaker("backup-jobs", failure_threshold=failure_threshold,
                             success_threshold=1, probe_interval_s=probe_interval_s,
                             alive_check=jobs.is_alive, clock=driver.clock)
    return bootstrap(driver.bus, backup_jobs=jobs, breaker=breaker,
                     retry=retry if retry is not None else MainTopicRetry(max_retries=5),
                     group_prefix=driver.name("backups"), start=True)


def _statuses(service: BackupService) -> dict[str, str]:
    return {k: v.status for k, v in service.repository.snapshot().items()}


def _created_dlt(driver: Driver) -> str:
    return dead_letter_topic(driver.bus.registry.topic_for(BackupRequestCreated))


def scenario_backups_happy_path(driver: Driver) -> None:
    service = make_service(driver)
    service.accept(request_id="r1", backup_job_id="job-on-demand")
    service.accept(request_id="r2", backup_job_id="job-scheduled-only")
    # a handler saves the new status, then publishes its events: on a real-time bus the
    # status can be seen before the publish returned, so wait for both
    driver.wait_until(lambda: _statuses(service) == {"r1": "sent", "r2": "not_allowed"}
                      and all(s.pending_events == 0 for s in service.repository.snapshot().values()),
                      timeout_s=TIMEOUT_S, what="r1 sent, r2 not allowed, nothing pending")
    assert service.interface.sent == ["r1"]
    assert service.breaker.state is BreakerState.CLOSED
    service.stop()


def scenario_backups_dependency_down_pauses_then_recovers(driver: Driver) -> None:
    """Down: two failures open the breaker, the check pauses (no more calls), then the
    dependency comes back, the alive check half-opens it, and every request is sent once."""
    service = make_service(driver, failure_threshold=2, probe_interval_s=1.0)
    service.backup_jobs.down()
    for i in range(4):
        service.accept(request_id=f"r{i}", backup_job_id="job-on-demand")
    driver.wait_until(lambda: service.breaker.state is BreakerState.OPEN,
                      timeout_s=TIMEOUT_S, what="the breaker to open")
    calls_when_open = len(service.backup_jobs.calls)
    assert calls_when_open == 2
    driver.idle(0.5)  # less than the probe interval: paused, the dependency is not called
    assert len(service.backup_jobs.calls) == calls_when_open
    assert service.breaker.state is BreakerState.OPEN
    service.backup_jobs.healthy()
    driver.wait_until(lambda: sorted(service.interface.sent) == ["r0", "r1", "r2", "r3"],
                      timeout_s=TIMEOUT_S, what="all four requests sent")
    states = [t.state for t in service.breaker.transitions]
    assert states[:3] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    assert driver.records(_created_dlt(driver)) == []
    assert set(_statuses(service).values()) == {"sent"}
    service.stop()


def scenario_backups_bad_data_dead_letters(driver: Driver) -> None:
    """Bad data is fatal: one call, a dead letter, the request stays received, breaker closed."""
    service = make_service(driver)
    service.backup_jobs.bad_data()
    service.accept(request_id="r1", backup_job_id="job-on-demand")
    dlt = _created_dlt(driver)
    driver.wait_until(lambda: len(driver.records(dlt)) == 1, timeout_s=TIMEOUT_S,
                      what="a dead letter for r1")
    [dead] = driver.records(dlt)
    prov = parse_provenance(dead.headers)
    assert prov.exception_fqcn == "builtins.ValueError"
    assert prov.attempt == 1
    assert len(service.backup_jobs.calls) == 1
    assert _statuses(service) == {"r1": "received"}
    assert service.breaker.state is BreakerState.CLOSED
    service.stop()


def scenario_backups_slow_dependency_retried_in_place(driver: Driver) -> None:
    """Too slow (TimeoutError, retriable) twice, then healthy: sent, in order, no DLT."""
    retry = InPlaceRetry(max_retries=10, backoff=Backoff(initial_s=0.05, max_s=0.2))
    service = make_service(driver, retry=retry, failure_threshold=50,
                           dependency_timeout_s=0.05)
    service.backup_jobs.slow(1.0)
    service.accept(request_id="r1", backup_job_id="job-on-demand")
    driver.wait_until(lambda: len(service.backup_jobs.calls) >= 2, timeout_s=TIMEOUT_S,
                      what="two timed-out calls")
    service.backup_jobs.healthy()
    driver.wait_until(lambda: service.interface.sent == ["r1"], timeout_s=TIMEOUT_S,
                      what="r1 sent")
    results = [c.result for c in service.backup_jobs.calls]
    assert results[:2] == ["TimeoutError", "TimeoutError"] and results[-1] == "ok"
    assert driver.records(_created_dlt(driver)) == []
    service.stop()


@dataclass(frozen=True)
class StorySummary:
    """What E08 compares between buses: end state, not timings."""

    statuses: tuple[tuple[str, str], ...]
    sent: tuple[str, ...]
    dead_letters: tuple[tuple[str, str], ...]  # (key, exception fqcn or reason kind)
    breaker_states: tuple[str, ...]
    pending_events: int


def backups_story(driver: Driver) -> StorySummary:
    """E08: happy requests, a not-allowed one, bad data, an outage with the breaker, recovery."""
    service = make_service(driver, failure_threshold=2, probe_interval_s=1.0)
    service.accept(request_id="a1", backup_job_id="job-on-demand")
    service.accept(request_id="a2", backup_job_id="job-scheduled-only")
    driver.wait_until(lambda: _statuses(service) == {"a1": "sent", "a2": "not_allowed"},
                      timeout_s=TIMEOUT_S, what="a1 sent, a2 not allowed")
    service.backup_jobs.bad_data()
    service.accept(request_id="b1", backup_job_id="job-on-demand")
    dlt = _created_dlt(driver)
    driver.wait_until(lambda: len(driver.records(dlt)) == 1, timeout_s=TIMEOUT_S,
                      what="b1 dead-lettered")
    service.backup_jobs.down()
    for i in range(3):
        service.accept(request_id=f"c{i}", backup_job_id="job-on-demand")
    driver.wait_until(lambda: service.breaker.state is BreakerState.OPEN,
                      timeout_s=TIMEOUT_S, what="the breaker to open")
    service.backup_jobs.healthy()
    driver.wait_until(
        lambda: {"c0", "c1", "c2"} <= set(service.interface.sent)
        and service.breaker.state is BreakerState.CLOSED,
        timeout_s=TIMEOUT_S, what="c0..c2 sent and the breaker closed")
    driver.idle(0.5)
    summary = StorySummary(
        statuses=tuple(sorted(_statuses(service).items())),
        sent=tuple(sorted(service.interface.sent)),
        dead_letters=tuple(sorted(
            ((r.key or b"").decode(), parse_provenance(r.headers).exception_fqcn or "")
            for r in driver.records(dlt))),
        breaker_states=tuple(t.state.value for t in service.breaker.transitions),
        pending_events=sum(s.pending_events for s in service.repository.snapshot().values()),
    )
    service.stop()
    return summary
