"""Raw kafka-python steps the notebooks share: topics, keyed produce, a group that drains,
and reading a topic and a group's offsets back (:mod:`offsetlab.bus.testing` on a broker).

These are deliberately plain kafka-python, not the adapter: the notebooks show what the raw
client does before they show the adapter (the readers and :class:`~offsetlab.bus.deadline.Deadline`
come from ``offsetlab.bus``, plain kafka-python and standard library themselves).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from offsetlab.brokers import BrokerHandle
from offsetlab.bus import testing
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.transports.kafka_python import compat


def unique(prefix: str) -> str:
    """``prefix-<8 hex>``: topic and group names that never collide between runs."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(broker: BrokerHandle, name: str, partitions: int = 1, *, timeout_s: float = 30) -> str:
    """Create ``name`` with ``partitions`` partitions and wait until its metadata shows them."""
    admin = KafkaAdminClient(**broker.clients(request_timeout_ms=int(timeout_s * 1000)))
    try:
        try:
            admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=int(timeout_s * 1000))
        except TopicAlreadyExistsError:
            pass
    finally:
        admin.close()
    consumer = KafkaConsumer(**broker.clients())
    try:
        deadline = Deadline(timeout_s)
        while len(consumer.partitions_for_topic(name) or ()) < partitions:
            if deadline.expired():
                raise TimeoutError(f"topic {name} did not show {partitions} partitions on "
                                   f"{broker.bootstrap_servers} within {timeout_s} s")
            time.sleep(0.1)
            consumer.topics()  # refresh metadata
    finally:
        consumer.close()
    return name


@dataclass(frozen=True)
class Produced:
    key: str
    value: str
    partition: int
    offset: int
    t: float  # time.monotonic() when acknowledged


def produce(broker: BrokerHandle, topic: str, messages: Iterable[tuple[str, str]], *,
            gap_s: float = 0.0, on_ack: Callable[[Produced], None] | None = None,
            **producer_settings: Any) -> list[Produced]:
    """Send (key, value) pairs one at a time, waiting for each acknowledgement; ``gap_s``
    between sends (the seed's 3 s)."""
    producer = KafkaProducer(**broker.clients(**producer_settings))
    out: list[Produced] = []
    try:
        for i, (key, value) in enumerate(messages):
            if i and gap_s:
                time.sleep(gap_s)
            md = producer.send(topic, key=key.encode(), value=value.encode()).get(timeout=30)
            p = Produced(key, value, md.partition, md.offset, time.monotonic())
            out.append(p)
            if on_ack:
                on_ack(p)
    finally:
        producer.close()
    return out


def read_topic(broker: BrokerHandle, topic: str, *, timeout_s: float = 20.0) -> list[Any]:
    """Every record of ``topic`` now, sorted by (partition, offset), read to its end with a
    group-less consumer (no commits, never creates the topic: a missing topic reads as []);
    :func:`offsetlab.bus.testing.read_topic` with the broker's client settings."""
    return testing.read_topic(broker.bootstrap_servers, topic, timeout_s=timeout_s,
                              client_settings=broker.client_config)


def committed_offsets(broker: BrokerHandle, group: str, topic: str) -> dict[int, int]:
    """``group``'s committed positions on ``topic`` (partition -> next offset; partitions
    never committed left out): :func:`offsetlab.bus.testing.committed_offsets`."""
    return testing.committed_offsets(broker.bootstrap_servers, group, topic,
                                     client_settings=broker.client_config)


def end_offsets(broker: BrokerHandle, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic`` now ({} for a missing topic, which is
    not created): :func:`offsetlab.bus.testing.end_offsets`."""
    return testing.end_offsets(broker.bootstrap_servers, topic,
                               client_settings=broker.client_config)


warmed_consumer = compat.warmed_consumer
"""A consumer factory that knows its topics' partitions before it joins: kafka-python's
workaround, kept in :mod:`offsetlab.bus.transports.kafka_python.compat` (re-exported here for
the raw experiments)."""


class _Assignments(ConsumerRebalanceListener):
    def __init__(self, group: RawGroup, member: str) -> None:
        self.group, self.member = group, member

    def on_partitions_revoked(self, revoked: Any) -> None:
        with self.group._lock:
            self.group._assigned[self.member] = []

    def on_partitions_assigned(self, assigned: Any) -> None:
        with self.group._lock:
            self.group._assigned[self.member] = sorted(tp.partition for tp in assigned)


class RawGroup:
    """Raw KafkaConsumers of one group, each polling on its own thread.

    kafka-python joins the group inside ``poll()`` and a member that is not polled cannot
    answer a rebalance, so each member needs a thread of its own (polling them in turn on one
    thread stalls the second join until the first member's next poll). Each member commits
    after every batch; ``close()`` stops the threads and closes the consumers (they leave the
    group)."""

    def __init__(self, broker: BrokerHandle, topic: str, group: str, members: Sequence[str],
                 on_record: Callable[[str, Any], None] | None = None,
                 **consumer_settings: Any) -> None:
        settings = {"group_id": group, "auto_offset_reset": "earliest", "enable_auto_commit": False,
                    **consumer_settings}
        self.topic = topic
        self.on_record = on_record
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._assigned: dict[str, list[int]] = {m: [] for m in members}
        self.received: dict[str, list[Any]] = {m: [] for m in members}
        self.errors: dict[str, BaseException] = {}
        self._threads = []
        for m in members:
            consumer = warmed_consumer([topic])(client_id=m, **broker.clients(**settings))
            consumer.subscribe([topic], listener=_Assignments(self, m))
            t = threading.Thread(target=self._loop, args=(m, consumer), name=f"rawgroup-{m}", daemon=True)
            self._threads.append(t)
            t.start()

    def _loop(self, member: str, consumer: KafkaConsumer) -> None:
        try:
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=100)
                for records in batch.values():
                    for record in records:
                        with self._lock:
                            self.received[member].append(record)
                        if self.on_record:
                            self.on_record(member, record)
                if batch:
                    consumer.commit()
        except BaseException as exc:  # noqa: BLE001 - surfaced through .errors
            self.errors[member] = exc
        finally:
            consumer.close()

    def assignment(self) -> dict[str, list[int]]:
        with self._lock:
            return {m: list(p) for m, p in self._assigned.items()}

    def count(self) -> int:
        with self._lock:
            return sum(map(len, self.received.values()))

    def wait_assigned(self, partitions: int, timeout_s: float = 30.0) -> dict[str, list[int]]:
        """Until every member holds partitions and together they hold ``partitions``."""
        deadline = Deadline(timeout_s)
        while True:
            a = self.assignment()
            if all(a.values()) and sum(map(len, a.values())) == partitions:
                return a
            if self.errors:
                raise next(iter(self.errors.values()))
            if deadline.expired():
                raise TimeoutError(f"group did not settle within {timeout_s} s: {a}")
            time.sleep(0.05)

    def drain(self, expect: int, timeout_s: float = 30.0) -> dict[str, list[Any]]:
        """Until ``expect`` records were received in total (or ``timeout_s``)."""
        deadline = Deadline(timeout_s)
        while self.count() < expect and not deadline.expired() and not self.errors:
            time.sleep(0.05)
        with self._lock:
            return {m: list(r) for m, r in self.received.items()}

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
