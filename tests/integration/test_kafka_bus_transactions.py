"""The Kafka bus's transactional mode on embedded Kafka (kafka-python transactions).

What a ``read_committed`` reader of the output topic sees is the test: every event's
handler publish exactly once, none from a failed attempt, none from an aborted batch; and
a producer that takes over a transactional id fences the old one and hides its open
transaction.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from offsetlab.brokers import BrokerHandle
from offsetlab.bus import deadline, testing
from offsetlab.bus.errors import TransactionAborted, TransactionFenced
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.kafka_bus import KafkaBus, KafkaBusConfig
from offsetlab.bus.outcomes import Outcome, Reject, Retry
from offsetlab.bus.ports import TransactionClient
from offsetlab.bus.retry import Backoff, InPlaceRetry, MainTopicRetry, RetryTopicRetry
from offsetlab.bus.types import TopicPartition

pytestmark = pytest.mark.integration

TIMEOUT_S = 90.0
FAST = Backoff(initial_s=0.05, multiplier=2.0, max_s=0.2)
COMMITTED = {"isolation_level": "read_committed"}


@dataclass(frozen=True, kw_only=True)
class Job(Event):
    topic: ClassVar[str] = "jobs"
    n: int

    @property
    def key(self) -> str:
        return str(self.n)


@dataclass(frozen=True, kw_only=True)
class Done(Event):
    topic: ClassVar[str] = "done"
    n: int
    attempt: int

    @property
    def key(self) -> str:
        return str(self.n)


def _registry(unique: str) -> EventRegistry:
    return EventRegistry([Job, Done], topic_prefix=f"tx-{unique}.")


def _done(servers: str, registry: EventRegistry) -> Counter[int]:
    """How many committed ``Done`` records each n has (read_committed, group-less)."""
    records = testing.read_topic(servers, registry.topic_for(Done), client_settings=COMMITTED)
    return Counter(registry.decode(r.value).n for r in records)  # type: ignore[attr-defined]


@pytest.fixture
def make_bus(kafka_broker: BrokerHandle, unique: str) -> Iterator[Callable[..., KafkaBus]]:
    from offsetlab.lab.raw import create_topic

    create_topic(kafka_broker, _registry(unique).topic_for(Done), 3)  # the handlers' output
    buses: list[KafkaBus] = []

    def make(config_class: type[KafkaBusConfig] = KafkaBusConfig, **overrides: Any) -> KafkaBus:
        settings: dict[str, Any] = dict(bootstrap_servers=kafka_broker.bootstrap_servers,
                                        name=f"tx-{unique}-{len(buses)}", default_partitions=3,
                                        transactional_id=f"tx-{unique}-slot-0",
                                        keep_activity=True)
        settings.update(overrides)
        bus = KafkaBus(_registry(unique), config_class(**settings))
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        bus.close()


def _publish_jobs(kafka_broker: BrokerHandle, unique: str, ns: range) -> None:
    with KafkaBus(_registry(unique), KafkaBusConfig(
            bootstrap_servers=kafka_broker.bootstrap_servers, name=f"pub-{unique}")) as pub:
        pub.publish_many([Job(n=n) for n in ns])


STRATEGIES = {
    "in_place": InPlaceRetry(max_retries=3, backoff=FAST),
    "main_topic": MainTopicRetry(max_retries=3),
    "retry_topic": RetryTopicRetry(max_retries=3, backoff=FAST),
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_handler_publishes_are_written_once_per_settled_record(
        make_bus: Callable[..., KafkaBus], kafka_broker: BrokerHandle, unique: str,
        name: str) -> None:
    """Handlers publish ``Done(n, attempt)`` and then fail n=2 twice (Retry) and n=5 always
    (Reject): the committed output has every other n once, from its successful attempt, no
    Done for 5, and the group's committed offsets reach the end of what it consumed."""
    bus = make_bus()
    attempts: Counter[int] = Counter()

    def handler(event: Event) -> Outcome | None:
        assert isinstance(event, Job)
        attempts[event.n] += 1
        bus.publish(Done(n=event.n, attempt=attempts[event.n]))  # kept only if it settles
        if event.n == 5:
            return Reject(reason="poison")
        if event.n == 2 and attempts[2] <= 2:
            return Retry(reason="not yet")
        return None

    group = f"g-{unique}"
    sub = bus.subscribe(Job, handler, group=group, retry=STRATEGIES[name])
    sub.run(timeout=TIMEOUT_S)
    _publish_jobs(kafka_broker, unique, range(8))
    servers = kafka_broker.bootstrap_servers
    registry = _registry(unique)
    deadline.wait_until(lambda: sum(_done(servers, registry).values()) >= 7,
                        timeout_s=TIMEOUT_S, what="7 committed Done records")
    sub.stop(timeout=30)
    done = _done(servers, registry)
    assert done == Counter({n: 1 for n in range(8) if n != 5}), done
    assert attempts[2] == 3
    records = testing.read_topic(servers, registry.topic_for(Done), client_settings=COMMITTED)
    attempt_of = {registry.decode(r.value).n: registry.decode(r.value).attempt  # type: ignore[attr-defined]
                  for r in records}
    assert attempt_of[2] == 3, "the committed Done of n=2 is its third (successful) attempt"
    dlt = testing.read_topic(servers, registry.topic_for(Job) + "-dlt",
                             client_settings=COMMITTED)
    assert [registry.decode(r.value).n for r in dlt] == [5]  # type: ignore[attr-defined]
    for topic in sub.spec.topics:
        left = testing.read_from_committed(servers, group, topic, client_settings=COMMITTED)
        assert left == [], f"records after the committed offset of {topic}: {left}"


class _AbortFirstCommit:
    """The real transactional producer, except that its first commit with offsets aborts
    (as a broker failure would): the runner must deliver the whole batch again."""

    def __init__(self, real: TransactionClient) -> None:
        self.real = real
        self.transactional_id = real.transactional_id
        self.aborted = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def commit(self, offsets: dict[TopicPartition, int], group_metadata: Any) -> None:
        if offsets and not self.aborted:
            self.aborted += 1
            self.real.abort()
            raise TransactionAborted("aborted by the test")
        self.real.commit(offsets, group_metadata)


def test_an_aborted_batch_is_delivered_again_and_its_writes_stay_hidden(
        make_bus: Callable[..., KafkaBus], kafka_broker: BrokerHandle, unique: str) -> None:
    wrappers: list[_AbortFirstCommit] = []

    @dataclass(frozen=True, kw_only=True)
    class AbortingConfig(KafkaBusConfig):
        def transactional_producer(self, group: str) -> TransactionClient:
            wrapper = _AbortFirstCommit(super().transactional_producer(group))
            wrappers.append(wrapper)
            return wrapper  # type: ignore[return-value]

    _publish_jobs(kafka_broker, unique, range(6))
    bus = make_bus(AbortingConfig)
    seen: Counter[int] = Counter()

    def handler(event: Event) -> None:
        assert isinstance(event, Job)
        seen[event.n] += 1
        bus.publish(Done(n=event.n, attempt=seen[event.n]))

    sub = bus.subscribe(Job, handler, group=f"g-{unique}")
    sub.run(timeout=TIMEOUT_S)
    servers, registry = kafka_broker.bootstrap_servers, _registry(unique)
    deadline.wait_until(lambda: sum(_done(servers, registry).values()) >= 6,
                        timeout_s=TIMEOUT_S, what="6 committed Done records")
    sub.stop(timeout=30)
    assert wrappers and wrappers[0].aborted == 1
    assert any(count > 1 for count in seen.values()), f"nothing redelivered: {seen}"
    assert _done(servers, registry) == Counter({n: 1 for n in range(6)})


def test_a_producer_taking_over_the_id_fences_the_old_one_and_hides_its_transaction(
        kafka_broker: BrokerHandle, unique: str) -> None:
    config = KafkaBusConfig(bootstrap_servers=kafka_broker.bootstrap_servers,
                            name=f"fence-{unique}", transactional_id=f"fence-{unique}")
    registry = _registry(unique)
    topic = registry.topic_for(Done)
    from offsetlab.lab.raw import create_topic

    create_topic(kafka_broker, topic, 1)
    old = config.transactional_producer("g")
    new = config.transactional_producer("g")
    try:
        old.begin()
        _, value, key, headers = registry.encode_record(Done(n=1, attempt=1))
        old.wait_all([(topic, old.send(topic, value, key, headers))])  # written, not committed
        new.begin()  # init_transactions: fences `old`, aborts its open transaction
        _, value, key, headers = registry.encode_record(Done(n=2, attempt=1))
        new.send(topic, value, key, headers)
        new.commit({}, None)  # type: ignore[arg-type]
        with pytest.raises(TransactionFenced):
            old.commit({}, None)  # type: ignore[arg-type]
        assert _done(kafka_broker.bootstrap_servers, registry) == Counter({2: 1})
    finally:
        old.close(5)
        new.close(5)


def test_a_write_the_broker_refuses_aborts_the_whole_transaction(
        kafka_broker: BrokerHandle, unique: str) -> None:
    """A record over the producer's max_request_size is refused at send(): the records sent
    before it in the same transaction must not be committed either."""
    config = KafkaBusConfig(bootstrap_servers=kafka_broker.bootstrap_servers,
                            name=f"refuse-{unique}", transactional_id=f"refuse-{unique}",
                            reproduce_producer={"max_request_size": 2000})
    registry = _registry(unique)
    topic = registry.topic_for(Done)
    from offsetlab.bus.errors import PublishError
    from offsetlab.lab.raw import create_topic

    create_topic(kafka_broker, topic, 1)
    txn = config.transactional_producer("g")
    try:
        txn.prepare()
        txn.begin()
        _, value, key, headers = registry.encode_record(Done(n=1, attempt=1))
        txn.send(topic, value, key, headers)
        with pytest.raises(PublishError):
            txn.send(topic, b"x" * 5000, None, ())
        with pytest.raises(TransactionAborted):
            txn.commit({}, None)
        txn.begin()  # the producer goes on with the next transaction
        _, value, key, headers = registry.encode_record(Done(n=2, attempt=1))
        txn.send(topic, value, key, headers)
        txn.commit({}, None)
        assert _done(kafka_broker.bootstrap_servers, registry) == Counter({2: 1})
    finally:
        txn.close(5)


def test_publish_outside_a_handler_is_a_normal_acknowledged_publish(
        make_bus: Callable[..., KafkaBus], kafka_broker: BrokerHandle, unique: str) -> None:
    bus = make_bus()
    receipt = bus.publish(Done(n=7, attempt=1))
    assert receipt.offset >= 0
    other = threading.Thread(target=lambda: bus.publish(Done(n=8, attempt=1)))
    other.start()
    other.join(30)
    assert _done(kafka_broker.bootstrap_servers, _registry(unique)) == Counter({7: 1, 8: 1})


def test_the_broker_checks_membership_only_for_a_member_id(
        kafka_broker: BrokerHandle, unique: str) -> None:
    """Why the producer refuses generation -1 itself (``_check_member``): with a member in the
    group, Kafka refuses transactional offsets from a member it does not know, but takes
    offsets without a member id (generation -1, what kafka-python resets a dropped member
    to) without any check."""
    from kafka import KafkaProducer
    from kafka.errors import CommitFailedError
    from kafka.structs import ConsumerGroupMetadata, OffsetAndMetadata
    from kafka.structs import TopicPartition as KafkaTopicPartition
    from offsetlab.bus.transports.kafka_python.compat import warmed_consumer
    from offsetlab.lab.raw import create_topic

    servers, topic, group = kafka_broker.bootstrap_servers, f"member-{unique}", f"g-{unique}"
    create_topic(kafka_broker, topic, 1)
    consumer = warmed_consumer(snapshot=True)(bootstrap_servers=servers, group_id=group,
                                              enable_auto_commit=False,
                                              metadata_max_age_ms=5000)
    consumer.subscribe([topic])
    producer = KafkaProducer(bootstrap_servers=servers, transactional_id=f"m-{unique}")
    try:
        # a member of a generation (its assignment does not matter here)
        deadline.wait_until(
            lambda: consumer.poll(100) is not None and consumer.group_metadata().generation_id >= 1,
            timeout_s=TIMEOUT_S, what="the member's join")
        producer.init_transactions()
        tp = KafkaTopicPartition(topic, 0)
        outcomes = {}
        for label, meta, offset in (("stranger", ConsumerGroupMetadata(group, 99, "nobody"), 9),
                                    ("no member", ConsumerGroupMetadata(group, -1, ""), 7)):
            producer.begin_transaction()
            try:
                producer.send_offsets_to_transaction({tp: OffsetAndMetadata(offset, "", -1)}, meta)
                producer.commit_transaction()
                outcomes[label] = "committed"
            except CommitFailedError:
                producer.abort_transaction()
                outcomes[label] = "refused"
        assert outcomes == {"stranger": "refused", "no member": "committed"}
        assert testing.committed_offsets(servers, group, topic) == {0: 7}
    finally:
        producer.close(5)
        consumer.close(autocommit=False)
