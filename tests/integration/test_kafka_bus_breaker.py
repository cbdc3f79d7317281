"""KafkaBus and a dependency's circuit breaker on embedded Kafka.

While the breaker is open the subscription pauses its partitions and keeps polling, so
the member stays in its group even when the outage outlasts the session timeout (3 s)
and the max poll interval (5 s); partitions a rebalance hands over are paused again; when
the dependency answers the breaker half-opens, the partitions resume and the backlog
drains, each event handled once successfully. On each client library (``client``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from offsetlab.brokers import BrokerHandle
from offsetlab.bus import testing
from offsetlab.bus.breaker import BreakerState, CircuitBreaker
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.interface import ActivityKind
from offsetlab.bus.kafka_bus import KafkaBus, KafkaBusConfig
from offsetlab.bus.lifecycle import Crash, LifecycleEvent, Rebalance
from offsetlab.bus.retry import Backoff, InPlaceRetry, dead_letter_topic
from test_kafka_bus import Job, read_topic, wait_until

pytestmark = pytest.mark.integration

# 12 heartbeats per session timeout: a member is dropped only if its heartbeat thread misses
# 5.5 s in a row, which a loaded 2-core machine does not do; the outage is still longer than
# both timeouts, so a member that stopped polling or heartbeating would be removed
SHORT_SESSION = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500,
                 "max_poll_interval_ms": 7000}
OUTAGE_S = 10.0  # longer than the session timeout and the max poll interval


class Dependency:
    """A downstream service that is up or down; records successful calls by ``n``."""

    def __init__(self) -> None:
        self.up = True
        self.handled: list[int] = []
        self.attempts = 0
        self._lock = threading.Lock()

    def call(self, n: int) -> None:
        with self._lock:
            self.attempts += 1
            if not self.up:
                raise ConnectionError("dependency unreachable")
            self.handled.append(n)


@pytest.fixture(params=("kafka-python", "confluent-kafka"))
def client(request: pytest.FixtureRequest) -> str:
    """The client library under the bus."""
    return str(request.param)


@pytest.fixture
def bus(kafka_broker: BrokerHandle, unique: str, client: str) -> Iterator[KafkaBus]:
    config = KafkaBusConfig(bootstrap_servers=kafka_broker.bootstrap_servers, keep_activity=True,
                            consumer_settings=SHORT_SESSION, name=f"brk-{unique}", client=client)
    with KafkaBus(EventRegistry([Job], topic_prefix=f"brk-{unique}."), config) as bus:
        yield bus


def _handler(dep: Dependency, breaker: CircuitBreaker) -> Callable[[Event], None]:
    def handle(event: Event) -> None:
        assert isinstance(event, Job)
        breaker.call(dep.call, event.n)  # DependencyUnavailable (fail fast) while open

    return handle


def _subscribe(bus: KafkaBus, dep: Dependency, breaker: CircuitBreaker, group: str,
               events: list[LifecycleEvent], name: str = "") -> Any:
    sub = bus.subscribe(Job, _handler(dep, breaker), group=group, depends_on=(breaker,),
                        name=name,
                        retry=InPlaceRetry(max_retries=1000, backoff=Backoff(initial_s=0.05,
                                                                            max_s=0.2)))
    sub.run(timeout=60)
    sub.runner.add_listener(events.append)
    return sub


def test_open_breaker_longer_than_session_timeout_keeps_membership_then_drains(
        bus: KafkaBus, kafka_broker: BrokerHandle, unique: str) -> None:
    dep = Dependency()
    breaker = CircuitBreaker("dep", failure_threshold=1, success_threshold=1,
                             probe_interval_s=0.5, alive_check=lambda: dep.up)
    group = f"brk-{unique}"
    events: list[LifecycleEvent] = []
    sub = _subscribe(bus, dep, breaker, group, events)
    # The first generation can be assigned before the leader's metadata shows the new topic
    # (kafka-python); wait for the real assignment, so only later rebalances count.
    wait_until(lambda: len(sub.runner.assignment()) == 3, "all three partitions assigned")
    time.sleep(0.5)
    events.clear()
    dep.up = False
    for n in range(6):
        bus.publish(Job(n=n, k=f"key-{n}"))
    wait_until(lambda: breaker.state is BreakerState.OPEN, "the breaker to open")
    wait_until(lambda: any(a.kind is ActivityKind.PAUSED for a in bus.activities()),
               "the subscription to pause")
    attempts_when_open = dep.attempts
    time.sleep(OUTAGE_S)
    assert breaker.state is BreakerState.OPEN
    assert dep.attempts == attempts_when_open, "no handler call may reach the dependency"
    assert not [e for e in events if isinstance(e, Rebalance | Crash)], (
        f"the member must keep its partitions while paused: {events}")
    assert sub.runner.assignment(), "still assigned"
    dep.up = True
    wait_until(lambda: sorted(dep.handled) == list(range(6)), "the backlog to drain")
    wait_until(lambda: testing.committed_to_end(kafka_broker.bootstrap_servers, group,
                                                bus.registry.topic_for(Job)), "commits to the end")
    assert Counter(dep.handled) == Counter(range(6)), "each handled once successfully"
    assert breaker.state is BreakerState.CLOSED
    assert [t.state for t in breaker.transitions] == [
        BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    assert not [e for e in events if isinstance(e, Rebalance | Crash)]
    assert any(a.kind is ActivityKind.RESUMED and "no breaker open" in a.detail
               for a in bus.activities())
    assert read_topic(kafka_broker.bootstrap_servers,
                      dead_letter_topic(bus.registry.topic_for(Job))) == []
    sub.stop()


def test_partitions_handed_over_while_open_are_paused_again(
        bus: KafkaBus, kafka_broker: BrokerHandle, unique: str) -> None:
    """A second member joins while the breaker is open: after the rebalance neither
    member delivers anything until the dependency is back; then each event once."""
    dep = Dependency()
    breaker = CircuitBreaker("dep", failure_threshold=1, success_threshold=1,
                             probe_interval_s=0.5, alive_check=lambda: dep.up)
    group = f"brk2-{unique}"
    first_events: list[LifecycleEvent] = []
    first = _subscribe(bus, dep, breaker, group, first_events, name="first")
    dep.up = False
    for n in range(6):
        bus.publish(Job(n=n, k=f"key-{n}"))
    wait_until(lambda: breaker.state is BreakerState.OPEN, "the breaker to open")
    attempts_when_open = dep.attempts
    second_events: list[LifecycleEvent] = []
    second = _subscribe(bus, dep, breaker, group, second_events, name="second")
    # kafka-python's leader sometimes assigns before its metadata shows the topic (an empty
    # assignment, "No partition metadata"); the bus's 5 s metadata refresh heals it.
    wait_until(lambda: len(first.runner.assignment() | second.runner.assignment()) == 3
               and bool(first.runner.assignment()) and bool(second.runner.assignment()),
               "the two members to share the three partitions")
    time.sleep(2.0)
    assert dep.attempts == attempts_when_open, "handed-over partitions must stay paused"
    assert any(a.kind is ActivityKind.PAUSED and a.subscription == second.spec.name
               for a in bus.activities()), "the new member paused for the open breaker"
    dep.up = True
    wait_until(lambda: sorted(dep.handled) == list(range(6)), "the backlog to drain")
    assert Counter(dep.handled) == Counter(range(6))
    second.stop()
    first.stop()
