"""The runner's guard against a group join kafka-python 3.0.12 abandons (``_unstick_join``).

The stuck state was seen on embedded Kafka (a finished JoinGroup/SyncGroup task whose
result no ``poll()`` consumes, so the member keeps an empty assignment); these fakes pin
down when the guard acts. The end-to-end effect is covered by every KafkaBus test that
subscribes to a just-created topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from offsetlab.bus.transports.kafka_python.compat import unstick_join as _unstick_join


@dataclass
class FakeTask:
    is_done: bool


@dataclass
class FakeCoordinator:
    _join_task: FakeTask | None
    wants_rejoin: bool
    requests: list[str] = field(default_factory=list)

    def need_rejoin(self) -> bool:
        return self.wants_rejoin

    def request_rejoin(self) -> None:
        self.requests.append("rejoin")


@dataclass
class FakeConsumer:
    _coordinator: FakeCoordinator | None


def test_finished_join_nobody_consumes_is_restarted() -> None:
    coordinator = FakeCoordinator(FakeTask(is_done=True), wants_rejoin=False)
    assert _unstick_join(FakeConsumer(coordinator)) is True
    assert coordinator.requests == ["rejoin"]


def test_join_in_flight_or_about_to_be_consumed_is_left_alone() -> None:
    in_flight = FakeCoordinator(FakeTask(is_done=False), wants_rejoin=False)
    pending_rejoin = FakeCoordinator(FakeTask(is_done=True), wants_rejoin=True)
    no_task = FakeCoordinator(None, wants_rejoin=False)
    for coordinator in (in_flight, pending_rejoin, no_task):
        assert _unstick_join(FakeConsumer(coordinator)) is False
        assert coordinator.requests == []


def test_consumers_without_kafka_python_internals_are_left_alone() -> None:
    assert _unstick_join(object()) is False
    assert _unstick_join(FakeConsumer(None)) is False
