"""The example domain: aggregate, fakes, use cases, and the shared scenarios on memory."""

from __future__ import annotations

import threading
import time

import pytest
from offsetlab.backups import (
    BackupInterface,
    BackupJob,
    BackupJobDependency,
    BackupRequest,
    BackupRequestAccepted,
    BackupRequestAllowed,
    BackupRequestCreated,
    BackupRequestNotAllowed,
    BackupRequestSent,
    DependencyMode,
    InvalidTransition,
    RequestStatus,
    backup_registry,
    bootstrap,
)
from offsetlab.bus.errors import AggregatePublishError
from offsetlab.bus.memory import InMemoryBus, ManualClock
from scenarios.backups_scenarios import (
    backups_story,
    scenario_backups_bad_data_dead_letters,
    scenario_backups_dependency_down_pauses_then_recovers,
    scenario_backups_happy_path,
    scenario_backups_slow_dependency_retried_in_place,
)
from scenarios.drivers import MemoryDriver


def _job(allows: bool = True) -> BackupJob:
    return BackupJob(backup_job_id="j1", allows_on_demand=allows, storage_provider="s3")


def test_accept_raises_accepted_event_with_request_fields() -> None:
    request = BackupRequest.accept(request_id="r1", backup_job_id="j1", data_date="2026-01-02",
                                   requester="ops")
    [event] = request.pending_events
    assert isinstance(event, BackupRequestAccepted)
    assert (event.request_id, event.backup_job_id, event.data_date, event.requester) == (
        "r1", "j1", "2026-01-02", "ops")
    assert event.key == "r1"


def test_request_moves_received_allowed_sent_raising_one_event_each() -> None:
    accepted = BackupRequestAccepted(request_id="r1", backup_job_id="j1", data_date="d",
                                     requester="ops")
    request = BackupRequest.receive(accepted)
    request.decide_allowed(_job(True))
    request.mark_sent()
    assert request.status is RequestStatus.SENT
    assert [type(e) for e in request.pending_events] == [
        BackupRequestCreated, BackupRequestAllowed, BackupRequestSent]


def test_not_allowed_is_final_and_sending_it_is_an_invalid_transition() -> None:
    accepted = BackupRequestAccepted(request_id="r1", backup_job_id="j1", data_date="d",
                                     requester="ops")
    request = BackupRequest.receive(accepted)
    request.decide_allowed(_job(False))
    assert request.status is RequestStatus.NOT_ALLOWED
    assert isinstance(request.pending_events[-1], BackupRequestNotAllowed)
    with pytest.raises(InvalidTransition, match="not_allowed -> sent"):
        request.mark_sent()


def test_answer_for_another_job_is_rejected_as_value_error() -> None:
    request = BackupRequest.receive(BackupRequestAccepted(
        request_id="r1", backup_job_id="other", data_date="d", requester="ops"))
    with pytest.raises(ValueError, match="asked for 'other'"):
        request.decide_allowed(_job())


@pytest.mark.parametrize("data", [
    None, [], {"backupJobId": "j1"}, {"backupJobId": "j1", "allowsOnDemand": "yes",
                                      "storageProvider": "s3"},
])
def test_backup_job_validation_raises_value_error(data: object) -> None:
    with pytest.raises(ValueError):
        BackupJob.from_mapping(data)


def test_dependency_fake_modes_and_alive_check() -> None:
    slept: list[float] = []
    jobs = BackupJobDependency(timeout_s=0.5, sleep=slept.append)
    jobs.add_job("j1")
    assert jobs.get_backup_job("j1")["allowsOnDemand"] is True
    jobs.down()
    assert not jobs.is_alive()
    with pytest.raises(ConnectionError):
        jobs.get_backup_job("j1")
    jobs.slow(0.2)
    assert jobs.is_alive() and jobs.get_backup_job("j1")["backupJobId"] == "j1"
    jobs.slow(3.0)
    assert not jobs.is_alive()
    with pytest.raises(TimeoutError):
        jobs.get_backup_job("j1")
    jobs.bad_data()
    with pytest.raises(ValueError):
        BackupJob.from_mapping(jobs.get_backup_job("j1"))
    jobs.healthy()
    with pytest.raises(KeyError):
        jobs.get_backup_job("missing")
    assert slept == [0.2, 0.5]
    assert [(c.mode, c.result) for c in jobs.calls] == [
        (DependencyMode.HEALTHY, "ok"), (DependencyMode.DOWN, "ConnectionError"),
        (DependencyMode.SLOW, "ok"), (DependencyMode.SLOW, "TimeoutError"),
        (DependencyMode.BAD_DATA, "bad_data"), (DependencyMode.HEALTHY, "KeyError")]


def test_saved_events_survive_a_publish_failure_and_go_out_on_redelivery() -> None:
    """receive stores the request; its Created publish fails; the redelivery publishes it."""
    clock = ManualClock()
    bus = InMemoryBus(backup_registry(), clock=clock)
    service = bootstrap(bus, clock=clock, start=True)
    service.backup_jobs.add_job("j1")
    service.accept(request_id="r1", backup_job_id="j1")
    created_topic = bus.registry.topic_for(BackupRequestCreated)
    bus.fail_next(1, topic=created_topic)
    bus.settle()
    assert service.interface.sent == ["r1"]
    assert len(bus.records(created_topic)) == 1
    failed = [a for a in bus.activity if a.kind == "publish_failed"]
    assert [a.topic for a in failed] == [created_topic]
    retried = [a for a in bus.activity if a.kind == "reproduced" and a.subscription == "receive"]
    assert len(retried) == 1 and "AggregatePublishError" in retried[0].detail
    assert [s for s in service.repository.saves if s[0] == "r1"][0] == ("r1", "received")


def test_accept_keeps_event_on_aggregate_when_broker_does_not_acknowledge() -> None:
    bus = InMemoryBus(backup_registry())
    service = bootstrap(bus)
    bus.fail_next(1)
    with pytest.raises(AggregatePublishError, match="backups.request-accepted"):
        service.accept(request_id="r1", backup_job_id="j1")
    assert bus.records(bus.registry.topic_for(BackupRequestAccepted)) == []


def test_bus_package_does_not_know_the_domain() -> None:
    import importlib
    import pkgutil

    import offsetlab.bus

    for mod in pkgutil.iter_modules(offsetlab.bus.__path__):
        source = importlib.util.find_spec(f"offsetlab.bus.{mod.name}").origin
        text = open(source, encoding="utf-8").read()
        assert "offsetlab.backups" not in text, mod.name


@pytest.mark.parametrize("scenario", [
    scenario_backups_happy_path,
    scenario_backups_dependency_down_pauses_then_recovers,
    scenario_backups_bad_data_dead_letters,
    scenario_backups_slow_dependency_retried_in_place,
], ids=lambda f: f.__name__)
def test_backups_scenario_on_memory_bus(scenario) -> None:
    driver = MemoryDriver()
    with driver.bus:
        scenario(driver)


def test_backups_story_is_deterministic_and_ends_as_expected() -> None:
    driver = MemoryDriver()
    first = backups_story(driver)
    second = backups_story(MemoryDriver())
    assert first == second
    kinds = {a.kind.value for a in driver.bus.activity}
    assert {"published", "delivered", "settled", "reproduced", "dead_lettered", "paused",
            "resumed", "breaker"} <= kinds  # what E08's timeline shows
    assert dict(first.statuses) == {"a1": "sent", "a2": "not_allowed", "b1": "received",
                                    "c0": "sent", "c1": "sent", "c2": "sent"}
    assert first.dead_letters == (("b1", "builtins.ValueError"),)
    assert first.breaker_states[:3] == ("open", "half_open", "closed")
    assert first.pending_events == 0


# -- idempotent by event id (offsetlab.bus.idempotent) ------------------------------------


def _allowed_record(bus: InMemoryBus):
    [record] = bus.records(bus.registry.topic_for(BackupRequestAllowed))
    return record


def test_a_redelivered_allowed_event_does_not_start_the_backup_twice() -> None:
    """The send handler's member is killed after starting the backup, before its commit: the
    record comes again (here: the same bytes once more on the topic). The wrapper skips it by
    its event id; the backup was started once."""
    clock = ManualClock()
    bus = InMemoryBus(backup_registry(), clock=clock)
    service = bootstrap(bus, clock=clock, start=True)
    service.backup_jobs.add_job("j1")
    service.accept(request_id="r1", backup_job_id="j1")
    bus.settle()
    assert service.interface.started == ["r1"]
    record = _allowed_record(bus)
    bus.publish_raw(record.topic, record.value, key=record.key, headers=record.headers)
    bus.settle()
    send = service.handlers["send"]
    assert (send.runs, send.skipped) == (1, 1)
    assert service.interface.started == ["r1"]
    assert bus.lag("backups.send", record.topic) == 0
    assert len(bus.records(bus.registry.topic_for(BackupRequestSent))) == 1


class _HeldInterface(BackupInterface):
    """Starts a backup and holds the caller until released (a slow backup API)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def send(self, request_id: str, storage_provider: str) -> None:
        super().send(request_id, storage_provider)
        self.release.wait(10)


def _deliver_twice_at_once(wrapped: bool) -> tuple[list[str], list[str]]:
    """One BackupRequestAllowed handled by two threads at once (a member that lost the
    partition still handling it while its replacement got it). Returns the backups started
    and the exceptions the two deliveries raised."""
    bus = InMemoryBus(backup_registry())
    interface = _HeldInterface()
    service = bootstrap(bus, interface=interface)
    request = BackupRequest.receive(BackupRequestAccepted(
        request_id="r1", backup_job_id="j1", data_date="d", requester="ops"))
    request.decide_allowed(_job(True))
    allowed = request.pending_events[-1]
    assert isinstance(allowed, BackupRequestAllowed)
    service.repository.save(request)
    handler = service.handlers["send"] if wrapped else service.handlers["send"].handler
    raised: list[str] = []

    def deliver() -> None:
        try:
            handler(allowed)
        except Exception as exc:  # the duplicate's InvalidTransition, unwrapped
            raised.append(type(exc).__name__)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 1.0   # both in send (unguarded) or one waiting in the claim
    while len(interface.started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    interface.release.set()
    for t in threads:
        t.join(10)
    return interface.started, raised


def test_two_deliveries_at_once_start_the_backup_once_only_with_the_wrapper() -> None:
    assert _deliver_twice_at_once(wrapped=True) == (["r1"], [])
    started, raised = _deliver_twice_at_once(wrapped=False)
    assert started == ["r1", "r1"] and raised == ["InvalidTransition"]


def test_a_failed_publish_leaves_the_event_unmarked_so_the_retry_publishes() -> None:
    """The handler raised (its Created publish was not acknowledged): not marked, so the
    redelivery runs it and publishes the pending event instead of being skipped."""
    clock = ManualClock()
    bus = InMemoryBus(backup_registry(), clock=clock)
    service = bootstrap(bus, clock=clock, start=True)
    service.backup_jobs.add_job("j1")
    service.accept(request_id="r1", backup_job_id="j1")
    bus.fail_next(1, topic=bus.registry.topic_for(BackupRequestCreated))
    bus.settle()
    receive = service.handlers["receive"]
    assert (receive.runs, receive.skipped) == (2, 0)
    assert service.interface.started == ["r1"]
