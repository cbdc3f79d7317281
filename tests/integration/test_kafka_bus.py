"""KafkaBus on embedded Kafka: strategies end to end with commits, bad input, producers.

Every test has its own uuid topic prefix and group names; waits have timeouts and assert
behaviour (what was delivered, written, committed), never speed. Every test runs on each
client library (``client``: kafka-python and confluent-kafka); the readers are kafka-python's.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from kafka import KafkaConsumer, KafkaProducer
from offsetlab.brokers import BrokerHandle
from offsetlab.bus import deadline, testing
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.headers import ATTEMPT, parse_provenance
from offsetlab.bus.interface import ActivityKind, Subscription
from offsetlab.bus.kafka_bus import KafkaBus, KafkaBusConfig
from offsetlab.bus.outcomes import Outcome, Reject
from offsetlab.bus.retry import (
    Backoff,
    InPlaceRetry,
    MainTopicRetry,
    RetryStrategy,
    RetryTopicRetry,
    dead_letter_topic,
)

pytestmark = pytest.mark.integration

TIMEOUT_S = 60.0
FAST = Backoff(initial_s=0.05, multiplier=2.0, max_s=0.2)


@dataclass(frozen=True, kw_only=True)
class Job(Event):
    topic: ClassVar[str] = "jobs"
    n: int
    k: str = "k"
    blob: str = ""

    @property
    def key(self) -> str:
        return self.k


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    try:
        deadline.wait_until(predicate, timeout_s=timeout_s, what=what)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


def read_topic(servers: str, topic: str) -> list[Any]:
    """Every record of ``topic`` from the beginning to its current end (group-less)."""
    return testing.read_topic(servers, topic)


class Script:
    """A handler recording deliveries of ``n`` and answering from ``answer(n, count)``."""

    def __init__(self, answer: Callable[[int, int], Outcome | None] | None = None) -> None:
        self.seen: list[int] = []
        self._answer = answer

    def __call__(self, event: Event) -> Outcome | None:
        assert isinstance(event, Job)
        self.seen.append(event.n)
        return self._answer(event.n, self.seen.count(event.n)) if self._answer else None

    def count(self) -> Counter[int]:
        return Counter(self.seen)


CLIENTS = ("kafka-python", "confluent-kafka")


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    """The client library under the bus."""
    return str(request.param)


@pytest.fixture
def make_bus(kafka_broker: BrokerHandle, unique: str,
             client: str) -> Iterator[Callable[..., KafkaBus]]:
    buses: list[KafkaBus] = []

    def make(**overrides: Any) -> KafkaBus:
        settings: dict[str, Any] = dict(bootstrap_servers=kafka_broker.bootstrap_servers,
                                        keep_activity=True, name=f"t-{unique}-{len(buses)}",
                                        client=client)
        settings.update(overrides)
        bus = KafkaBus(EventRegistry([Job], topic_prefix=f"kb-{unique}."), KafkaBusConfig(**settings))
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()


def _run(bus: KafkaBus, handler: Script, strategy: RetryStrategy, group: str,
         **kwargs: Any) -> Subscription:
    sub = bus.subscribe(Job, handler, group=group, retry=strategy, **kwargs)
    sub.run(timeout=TIMEOUT_S)
    return sub


STRATEGIES: dict[str, RetryStrategy] = {
    "in_place": InPlaceRetry(max_retries=2, backoff=FAST),
    "main_topic": MainTopicRetry(max_retries=2),
    "retry_topic": RetryTopicRetry(max_retries=2, backoff=FAST),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_end_to_end_commits_everything_and_creates_topics(
        make_bus: Callable[..., KafkaBus], kafka_broker: BrokerHandle, unique: str,
        name: str) -> None:
    """n=2 fails twice then succeeds, n=3 always fails (dead letter), the rest succeed;
    at the end the group has committed every topic it reads to its end offset, and the
    retry and dead-letter topics have the main topic's partition count."""
    strategy = STRATEGIES[name]
    bus = make_bus(default_partitions=3)
    servers = kafka_broker.bootstrap_servers

    def answer(n: int, count: int) -> None:
        if n == 3 or (n == 2 and count <= 2):
            raise ConnectionError(f"dependency down for {n}")

    handler = Script(answer)
    group = f"e2e-{unique}"
    sub = _run(bus, handler, strategy, group)
    for n in range(6):
        bus.publish(Job(n=n, k=f"key-{n % 3}"))
    topic = bus.registry.topic_for(Job)
    dlt = dead_letter_topic(topic)
    wait_until(lambda: len(read_topic(servers, dlt)) == 1 and handler.count()[2] == 3,
               "one dead letter and three deliveries of n=2")
    read_topics = sub.spec.topics
    testing.wait_committed_to_end(servers, group, read_topics, timeout_s=TIMEOUT_S)
    sub.stop()
    assert handler.count() == Counter({0: 1, 1: 1, 2: 3, 3: 3, 4: 1, 5: 1})
    [dead] = read_topic(servers, dlt)
    prov = parse_provenance(dead.headers)
    assert prov.original_topic == topic and prov.attempt == 3
    assert prov.original_consumer_group == group
    consumer = KafkaConsumer(bootstrap_servers=servers)
    try:
        consumer.topics()
        counts = {t: len(consumer.partitions_for_topic(t) or ()) for t in (topic, *read_topics, dlt)}
    finally:
        consumer.close()
    assert set(counts.values()) == {3}, counts
    kinds = Counter(a.kind for a in bus.activities())
    assert kinds[ActivityKind.DEAD_LETTERED] == 1
    if name == "in_place":
        assert kinds[ActivityKind.SEEK_BACK] == 4 and kinds[ActivityKind.REPRODUCED] == 0
    else:
        assert kinds[ActivityKind.REPRODUCED] == 4 and kinds[ActivityKind.SEEK_BACK] == 0


def test_poison_message_dead_lettered_with_provenance_and_later_messages_continue(
        make_bus: Callable[..., KafkaBus], kafka_broker: BrokerHandle, unique: str) -> None:
    """In-place retry blocks the partition for the poison message only until it is
    dead-lettered; the later messages of the same key are then handled, in order."""
    bus = make_bus()
    servers = kafka_broker.bootstrap_servers

    def answer(n: int, count: int) -> None:
        if n == 1:
            raise TimeoutError("downstream never answers for n=1")

    handler = Script(answer)
    group = f"poison-{unique}"
    sub = _run(bus, handler, InPlaceRetry(max_retries=3, backoff=FAST), group)
    receipts = [bus.publish(Job(n=n, k="same-key")) for n in range(5)]
    assert len({r.partition for r in receipts}) == 1
    dlt = dead_letter_topic(bus.registry.topic_for(Job))
    wait_until(lambda: handler.seen.count(4) == 1, "the message after the poison one")
    # the batch's later messages are handled before the dead letter's send is acknowledged
    wait_until(lambda: len(read_topic(servers, dlt)) == 1, "the dead letter on its topic")
    [dead] = read_topic(servers, dlt)
    prov = parse_provenance(dead.headers)
    poison = receipts[1]
    assert (prov.original_topic, prov.original_partition, prov.original_offset) == (
        poison.topic, poison.partition, poison.offset)
    assert prov.exception_fqcn == "builtins.TimeoutError"
    assert prov.exception_message == "downstream never answers for n=1"
    assert prov.original_consumer_group == group and prov.attempt == 4
    assert prov.original_timestamp_ms is not None
    # in order: 0, then n=1 four times (first try + 3 retries), then 2, 3, 4
    assert handler.seen == [0, 1, 1, 1, 1, 2, 3, 4]
    wait_until(lambda: testing.committed_offsets(servers, group, poison.topic).get(poison.partition)
               == poison.offset + 4, "commit past the last message")
    sub.stop()


def test_malformed_input_is_dead_lettered_and_consumer_keeps_going(
        make_bus: Callable[..., KafkaBus], kafka_broker: BrokerHandle, unique: str) -> None:
    """Not-JSON bytes, a tombstone (no value) and a malformed attempt header each go to the
    dead-letter topic once (no retries: they can never decode), with provenance."""
    bus = make_bus()
    servers = kafka_broker.bootstrap_servers
    handler = Script()
    sub = _run(bus, handler, MainTopicRetry(max_retries=5), f"malformed-{unique}")
    topic = bus.registry.topic_for(Job)
    bad = [
        bus.publish_raw(topic, b"\x00\x01 definitely not an envelope", key=b"a"),
        bus.publish_raw(topic, None, key=b"tombstone"),
        bus.publish_raw(topic, b"{}", key=b"c", headers=[(ATTEMPT, b"\x00\x01\x02")]),
    ]
    bus.publish(Job(n=9, k="a"))
    dlt = dead_letter_topic(topic)
    wait_until(lambda: len(read_topic(servers, dlt)) >= 3 and handler.seen == [9],
               "three dead letters and the good event")
    time.sleep(0.5)
    dead = read_topic(servers, dlt)
    assert len(dead) == 3 and handler.seen == [9]
    by_offset = {parse_provenance(r.headers).original_offset: r for r in dead}
    assert set(by_offset) == {r.offset for r in bad}
    for receipt in bad:
        record = by_offset[receipt.offset]
        prov = parse_provenance(record.headers)
        assert prov.original_topic == topic and prov.original_partition == receipt.partition
        assert prov.attempt == 1 and prov.reason is not None and prov.reason.startswith("fatal:")
    assert by_offset[bad[1].offset].value is None
    assert parse_provenance(by_offset[bad[0].offset].headers).exception_fqcn == (
        "offsetlab.bus.errors.MalformedEnvelope")
    assert parse_provenance(by_offset[bad[2].offset].headers).exception_fqcn == (
        "offsetlab.bus.errors.MalformedHeaders")
    sub.stop()


def test_publish_and_reproduce_producers_have_their_own_settings(
        make_bus: Callable[..., KafkaBus], kafka_broker: BrokerHandle, unique: str) -> None:
    """A publish producer with a small ``max_request_size`` refuses a big event while the
    reproduce producer (default size) still dead-letters a big record it consumed."""
    bus = make_bus(publish_producer={"max_request_size": 4000}, publish_timeout_s=10.0)
    servers = kafka_broker.bootstrap_servers
    topic = bus.registry.topic_for(Job)
    from offsetlab.bus.errors import PublishError

    with pytest.raises(PublishError) as caught:
        bus.publish(Job(n=1, blob="x" * 10_000))
    assert topic in str(caught.value) and servers in str(caught.value)
    small = bus.publish(Job(n=2))
    assert small.topic == topic

    handler = Script(lambda n, count: Reject(reason="too big") if n == 3 else None)
    sub = _run(bus, handler, MainTopicRetry(max_retries=1), f"sizes-{unique}")
    raw = KafkaProducer(bootstrap_servers=servers)
    try:
        big = bus.registry.encode(Job(n=3, blob="y" * 10_000))
        raw.send(topic, big.value, key=big.key, headers=list(big.headers)).get(timeout=30)
    finally:
        raw.close()
    dlt = dead_letter_topic(topic)
    wait_until(lambda: len(read_topic(servers, dlt)) == 1, "the big record dead-lettered")
    [dead] = read_topic(servers, dlt)
    assert dead.value == big.value
    assert sorted(handler.seen) == [2, 3]
    sub.stop()


def test_unacknowledged_copy_is_never_committed(
        make_bus: Callable[..., KafkaBus], kafka_broker: BrokerHandle, unique: str) -> None:
    """When the dead letter cannot be written (the reproduce producer refuses it), the
    source offset is not committed and the record is delivered again: at-least-once,
    never at-most-once by accident. Later records of the partition wait behind it, and
    nothing reaches the dead-letter topic."""
    bus = make_bus(reproduce_producer={"max_request_size": 1000}, reproduce_timeout_s=5.0)
    servers = kafka_broker.bootstrap_servers
    handler = Script(lambda n, count: Reject(reason="no") if n == 1 else None)
    group = f"unacked-{unique}"
    sub = _run(bus, handler, MainTopicRetry(max_retries=1), group)
    r0 = bus.publish(Job(n=0, k="p"))
    r1 = bus.publish(Job(n=1, k="p", blob="z" * 2000))
    bus.publish(Job(n=2, k="p"))
    wait_until(lambda: handler.seen.count(1) >= 3, "the refused record delivered three times")
    failed = [a for a in bus.activities(ActivityKind.PUBLISH_FAILED)
              if a.offset == r1.offset and a.partition == r1.partition]
    assert len(failed) >= 2 and all("not committed" in a.detail for a in failed)
    committed = testing.committed_offsets(servers, group, r1.topic)
    assert committed.get(r1.partition, 0) == r1.offset  # n=0 committed, n=1 not
    assert handler.seen.count(0) == 1
    assert read_topic(servers, dead_letter_topic(r0.topic)) == []
    sub.stop()
    committed = testing.committed_offsets(servers, group, r1.topic)
    assert committed.get(r1.partition, 0) == r1.offset
