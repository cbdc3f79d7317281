"""KafkaBus when the broker does not answer: clear errors, bounded waits, nothing lost.

These tests start their own broker (``start_broker("kafka")``) so they can stop it; each
runs on each client library (``client``).
"""

from __future__ import annotations

import socket
import time
from typing import ClassVar

import pytest
from offsetlab.brokers import start_broker
from offsetlab.bus.aggregate import AggregateRoot
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.errors import AggregatePublishError, PublishError
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.kafka_bus import KafkaBus, KafkaBusConfig
from offsetlab.bus.testing import read_topic
from test_kafka_bus import Job

pytestmark = pytest.mark.integration

TIMEOUT_S = 3.0
#: what the bound separates: the configured timeout (3 s) from kafka-python's defaults
#: (30 s request timeout, 60 s max block); 3x the timeout leaves 6 s for scheduling and the
#: client's close on a loaded 2-core machine and still fails at any default
BOUND_S = 3 * TIMEOUT_S


class Order(AggregateRoot):
    topic: ClassVar[str] = "orders"

    def __init__(self, order_id: str) -> None:
        super().__init__()
        self.order_id = order_id

    def place(self, n: int) -> None:
        self.raise_event(Job(n=n, k=self.order_id))


@pytest.fixture(params=("kafka-python", "confluent-kafka"))
def client(request: pytest.FixtureRequest) -> str:
    """The client library under the bus."""
    return str(request.param)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_publish_with_broker_down_fails_within_timeout_and_event_stays_on_aggregate(
        unique: str, client: str) -> None:
    registry = EventRegistry([Job], topic_prefix=f"out-{unique}.")
    with start_broker("kafka") as broker:
        servers = broker.bootstrap_servers
        config = KafkaBusConfig(bootstrap_servers=servers, publish_timeout_s=TIMEOUT_S,
                                name=f"out-{unique}", client=client)
        bus = KafkaBus(registry, config)
        try:
            order = Order("o-1")
            order.place(1)
            assert [e.n for e in bus.publish_for_aggregate(order)] == [1]  # type: ignore[attr-defined]
            assert order.pending_events == ()
            broker.stop()
            order.place(2)
            order.place(3)
            pending = order.pending_events
            stuck = bus._producers.producer("publish")
            started = time.monotonic()
            with pytest.raises(AggregatePublishError) as caught:
                bus.publish_for_aggregate(order)
            elapsed = time.monotonic() - started
            assert elapsed < BOUND_S, f"took {elapsed:.1f}s for a {TIMEOUT_S}s timeout"
            assert order.pending_events == pending, "both events stay on the aggregate, in order"
            assert caught.value.unpublished == pending and caught.value.published == ()
            cause = caught.value.__cause__
            assert isinstance(cause, PublishError)
            assert servers in str(cause) and f"{TIMEOUT_S:g} s" in str(cause)
            assert registry.topic_for(Job) in str(cause)
            # a timed-out client is replaced (kafka-python's idempotent producer can stay stuck
            # after a broker restart), so the next publish does not inherit its state
            assert "publish" not in bus._producers._producers
            # the broker comes back: publishing again from the aggregate delivers both, once
            broker.start()
            published = []
            deadline = Deadline(60)
            while order.pending_events:  # what a caller does: try again until it goes through
                try:
                    published += bus.publish_for_aggregate(order)
                except AggregatePublishError as exc:
                    published += exc.published
                    assert not deadline.expired(), "the broker came back 60 s ago"
                    time.sleep(0.2)
            assert [e.n for e in published] == [2, 3]  # type: ignore[attr-defined]
            assert bus._producers.producer("publish") is not stuck
            assert order.pending_events == ()
            values = [registry.decode(r.value) for r in read_topic(servers, registry.topic_for(Job))]
            ns = sorted(e.n for e in values if isinstance(e, Job))
            assert ns.count(1) == 1 and {2, 3} <= set(ns)  # a retried publish may duplicate
        finally:
            bus.close(timeout_s=10)


def test_publish_to_an_address_nobody_answers_names_it_within_timeout(unique: str,
                                                                     client: str) -> None:
    servers = f"127.0.0.1:{_free_port()}"
    bus = KafkaBus(EventRegistry([Job]), KafkaBusConfig(bootstrap_servers=servers,
                                                        publish_timeout_s=TIMEOUT_S, client=client))
    try:
        event: Event = Job(n=1)
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            bus.publish(event)
        elapsed = time.monotonic() - started
        assert elapsed < BOUND_S, f"took {elapsed:.1f}s for a {TIMEOUT_S}s timeout"
        assert servers in str(caught.value) and str(round(TIMEOUT_S * 1000)) in str(caught.value)
    finally:
        bus.close(timeout_s=5)
