"""kafka-python 3.0.12 quirks on the embedded broker, with and without the workaround in
``offsetlab.bus.transports.kafka_python.compat``: the test shows the bug, then the fix."""

from __future__ import annotations

import time

import kafka.errors as kafka_errors
import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from offsetlab.brokers import BrokerHandle
from offsetlab.bus.transports.kafka_python.compat import unpark_resumed
from offsetlab.lab.raw import create_topic

N = 100


def _paused_then_resumed(servers: str, topic: str, *, fix: bool) -> dict[int, int]:
    """Records delivered per partition: both partitions hold N records; the partition that
    delivered first is paused after its first poll (5 records, ``max_poll_records``), the
    other drained, then the first resumed, and polled up to 15 s for the rest."""
    consumer = KafkaConsumer(bootstrap_servers=servers, max_poll_records=5,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    if fix:
        assert unpark_resumed(consumer)
    got = {0: 0, 1: 0}

    def poll() -> None:
        for tp, records in consumer.poll(timeout_ms=200).items():
            got[tp.partition] += len(records)

    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 30
        while not any(got.values()) and time.monotonic() < deadline:
            poll()
        first = TopicPartition(topic, 0 if got[0] else 1)
        consumer.pause(first)
        deadline = time.monotonic() + 30
        while got[1 - first.partition] < N and time.monotonic() < deadline:
            poll()
        consumer.resume(first)
        deadline = time.monotonic() + 15
        while sum(got.values()) < 2 * N and time.monotonic() < deadline:
            poll()
        return got
    finally:
        consumer.close(autocommit=False)


@pytest.mark.parametrize("fix", [False, True], ids=["kafka-python", "unpark_resumed"])
def test_a_resumed_partition_delivers_its_parked_records_only_with_the_fix(
        kafka_broker: BrokerHandle, unique: str, fix: bool) -> None:
    topic = f"park-{unique}"
    create_topic(kafka_broker, topic, 2)
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    for partition in (0, 1):
        for _ in range(N):
            producer.send(topic, value=b"x", partition=partition)
    producer.flush()
    producer.close()
    got = _paused_then_resumed(kafka_broker.bootstrap_servers, topic, fix=fix)
    if fix:
        assert got == {0: N, 1: N}
    else:  # kafka-python 3.0.12: stuck at its first poll's 5 (a newer release may fix it)
        assert sorted(got.values()) == [5, N], got


@pytest.mark.slow
def test_close_now_stops_a_producer_whose_broker_is_gone() -> None:
    """A producer with records pending for a broker that stopped: kafka-python's
    ``close(timeout=0)`` raises and leaves the sender thread running; ``close_now`` stops it."""
    from offsetlab.brokers import start_broker
    from offsetlab.bus.transports.kafka_python.compat import close_now

    with start_broker("kafka") as broker:
        create_topic(broker, "gone", 1)
        producers = [KafkaProducer(bootstrap_servers=broker.bootstrap_servers,
                                   reconnect_backoff_max_ms=500) for _ in range(2)]
        for producer in producers:
            producer.send("gone", b"first").get(timeout=30)
    for producer in producers:  # the broker has stopped: these stay pending
        producer.send("gone", b"pending")
    plain, fixed = producers
    with pytest.raises(kafka_errors.KafkaTimeoutError):
        plain.close(timeout=0)
    assert plain._sender.is_alive(), "kafka-python 3.0.12 leaves the sender running"
    close_now(fixed)
    fixed._sender.join(10)
    assert not fixed._sender.is_alive()
    close_now(plain)  # cleanup
