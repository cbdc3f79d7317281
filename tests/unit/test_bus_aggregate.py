"""publish_for_aggregate: in order, cleared only once acknowledged, clear error otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
from offsetlab.bus.aggregate import AggregateRoot, publish_for_aggregate
from offsetlab.bus.errors import AggregatePublishError, PublishError
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.memory import InMemoryBus


@dataclass(frozen=True, kw_only=True)
class Step(Event):
    topic: ClassVar[str] = "steps"
    n: int


@dataclass(frozen=True, kw_only=True)
class Audit(Event):
    topic: ClassVar[str] = "audit"
    n: int


class Thing(AggregateRoot):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def aggregate_label(self) -> str:
        return f"Thing {self.name}"


class RecordingPublisher:
    """Acknowledges every event except those whose n is in ``fail``; records calls."""

    def __init__(self, fail: set[int] | None = None) -> None:
        self.fail = fail or set()
        self.calls: list[int] = []

    def __call__(self, event: Event) -> None:
        assert isinstance(event, Step | Audit)
        self.calls.append(event.n)
        if event.n in self.fail:
            raise PublishError(f"topic {event.topic!r} not acknowledged (servers 10.0.0.1:9092, "
                               "timeout 5.0s)")


def _thing(*ns: int) -> Thing:
    thing = Thing("t1")
    for n in ns:
        thing.raise_event(Step(n=n))
    return thing


def test_publishes_in_order_and_clears_each() -> None:
    thing = _thing(1, 2, 3)
    publish = RecordingPublisher()
    published = publish_for_aggregate(thing, publish)
    assert publish.calls == [1, 2, 3]
    assert [e.n for e in published] == [1, 2, 3]  # type: ignore[attr-defined]
    assert thing.pending_events == ()


def test_failure_keeps_the_failed_event_and_the_rest_in_order() -> None:
    thing = _thing(1, 2, 3)
    events = thing.pending_events
    publish = RecordingPublisher(fail={2})
    with pytest.raises(AggregatePublishError) as info:
        publish_for_aggregate(thing, publish)
    err = info.value
    assert publish.calls == [1, 2]  # stopped at the failure: 3 never tried
    assert thing.pending_events == events[1:]
    assert err.published == events[:1] and err.unpublished == events[1:]
    assert isinstance(err.__cause__, PublishError)
    message = str(err)
    for part in ("published 1 of 3", "Thing t1", "'steps'", "10.0.0.1:9092", "timeout 5.0s",
                 "publish_for_aggregate again"):
        assert part in message
    publish.fail.clear()
    publish_for_aggregate(thing, publish)
    assert publish.calls == [1, 2, 2, 3] and thing.pending_events == ()


def test_non_publish_errors_propagate_and_keep_the_event() -> None:
    thing = _thing(1)

    def broken(event: Event) -> None:
        raise RuntimeError("encoder bug")

    with pytest.raises(RuntimeError):
        publish_for_aggregate(thing, broken)
    assert len(thing.pending_events) == 1


def test_raise_event_rejects_non_events_and_mark_published_unknown() -> None:
    thing = Thing("x")
    with pytest.raises(TypeError):
        thing.raise_event("nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not pending"):
        thing.mark_published(Step(n=1))


def test_memory_bus_publish_for_aggregate_writes_only_acknowledged_records() -> None:
    bus = InMemoryBus(EventRegistry([Step, Audit]))
    thing = Thing("t2")
    thing.raise_event(Step(n=1))
    thing.raise_event(Audit(n=2))
    thing.raise_event(Step(n=3))
    bus.fail_next(1, topic="audit")
    with pytest.raises(AggregatePublishError, match="'audit'.*memory://memory"):
        bus.publish_for_aggregate(thing)
    assert len(bus.records("steps")) == 1 and bus.records("audit") == []
    assert [type(e).__name__ for e in thing.pending_events] == ["Audit", "Step"]
    bus.publish_for_aggregate(thing)
    assert len(bus.records("steps")) == 2 and len(bus.records("audit")) == 1
    assert thing.pending_events == ()


def test_concurrent_publishers_of_one_aggregate_send_each_event_once() -> None:
    import threading
    import time

    thing = _thing(*range(50))
    sent: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def slow_publish(event: Event) -> None:
        assert isinstance(event, Step)
        time.sleep(0.001)  # a broker round trip, so the threads overlap
        with lock:
            sent.append(event.n)

    def worker() -> None:
        barrier.wait(timeout=10)
        publish_for_aggregate(thing, slow_publish)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert sent == list(range(50)) and thing.pending_events == ()
