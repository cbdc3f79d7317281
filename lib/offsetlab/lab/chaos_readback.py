"""What a chaos run reads back from the broker: the run's topics created with the
cluster's replication defaults (:func:`create_topics`), the records of a topic read with a
group-less ``read_committed`` consumer (:class:`TopicReader`: once to the end, or again and
again while the run drains), the input records of the main topic and the dead letters with
their provenance (:func:`read_inputs`, :func:`read_dead_letters`), and the records a group
left at or after its committed offsets (:func:`left_after_commit`).

``read_committed``: records of aborted transactions and transaction markers are not
records a reader gets; for topics written without transactions it reads what
``read_uncommitted`` reads.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from offsetlab.bus.deadline import Deadline
from offsetlab.bus.headers import ORIGINAL_TOPIC, parse_provenance

from .chaos_accounting import DeadLetter
from .chaos_events import chaos_registry

__all__ = ["create_topics", "TopicReader", "read_inputs", "read_dead_letters", "seq_of",
           "left_after_commit", "where_seqs", "where_seqs_librdkafka"]

_REGISTRY = chaos_registry("")


def seq_of(value: bytes | None) -> int:
    """The ``seq`` of a chaos record's value (-1 when it is not a chaos event)."""
    try:
        return int(getattr(_REGISTRY.decode(value), "seq", -1))
    except Exception:  # a record that is not ours: counted as seq -1
        return -1


_READ_COMMITTED = {"isolation_level": "read_committed"}


def _consumer(servers: str, **settings: Any) -> Any:
    from kafka import KafkaConsumer

    return KafkaConsumer(bootstrap_servers=servers.split(","), group_id=None,
                         enable_auto_commit=False, allow_auto_create_topics=False,
                         isolation_level="read_committed", **settings)


def _partitions(consumer: Any, topic: str) -> list[Any]:
    from kafka.structs import TopicPartition

    consumer.topics()  # refresh metadata
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def create_topics(servers: str, names: Iterable[str], partitions: int, *,
                  timeout_s: float = 60.0) -> None:
    """Create ``names`` with ``partitions`` partitions and the broker's default replication
    factor (3 on the cluster, 1 on one node); wait until the metadata shows them."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    names = list(names)
    admin = KafkaAdminClient(bootstrap_servers=servers.split(","),
                             request_timeout_ms=int(timeout_s * 1000))
    try:
        for name in names:
            try:
                admin.create_topics([NewTopic(name, partitions, -1)],
                                    timeout_ms=int(timeout_s * 1000))
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    consumer = _consumer(servers)
    try:
        deadline = Deadline(timeout_s)
        while any(len(_partitions(consumer, n)) < partitions for n in names):
            if deadline.expired():
                raise TimeoutError(f"topics {names} did not show {partitions} partitions on "
                                   f"{servers} within {timeout_s:.0f} s")
            time.sleep(0.2)
    finally:
        consumer.close(autocommit=False)


class TopicReader:
    """A group-less read_committed consumer of every partition of ``topic`` from the
    beginning; :meth:`catch_up` reads to the end offsets of now (the last stable offsets)
    and hands each new record to ``on_record``. Close it (or use ``with``)."""

    def __init__(self, servers: str, topic: str, on_record: Callable[[Any], None]) -> None:
        self.topic = topic
        self._on_record = on_record
        self._consumer = _consumer(servers)
        self._tps: list[Any] = []

    def catch_up(self, timeout_s: float = 60.0) -> None:
        """Read every record up to the end offsets taken now; ``TimeoutError`` if that
        takes longer than ``timeout_s``."""
        c = self._consumer
        if not self._tps:
            self._tps = _partitions(c, self.topic)
            if not self._tps:
                return
            c.assign(self._tps)
            c.seek_to_beginning(*self._tps)
        end = c.end_offsets(self._tps)
        deadline = Deadline(timeout_s)
        while any(c.position(tp) < end[tp] for tp in self._tps):
            if deadline.expired():
                raise TimeoutError(f"could not read {self.topic} to {end} within {timeout_s:.0f} s")
            for records in c.poll(timeout_ms=200).values():
                for r in records:
                    self._on_record(r)

    def close(self) -> None:
        self._consumer.close(autocommit=False)

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def read_inputs(servers: str, topic: str) -> tuple[Counter[int], dict[tuple[int, int], int]]:
    """The main topic's input records (those without provenance headers; retry copies have
    them): records per seq, and (partition, offset) -> seq."""
    per_seq: Counter[int] = Counter()
    at: dict[tuple[int, int], int] = {}

    def take(r: Any) -> None:
        if any(k == ORIGINAL_TOPIC for k, _ in (r.headers or ())):
            return
        seq = seq_of(r.value)
        per_seq[seq] += 1
        at[(r.partition, r.offset)] = seq

    with TopicReader(servers, topic, take) as reader:
        reader.catch_up()
    return per_seq, at


def dead_letter_of(record: Any) -> DeadLetter:
    p = parse_provenance(record.headers or ())
    return DeadLetter(seq_of(record.value), p.original_topic, p.original_partition,
                      p.original_offset)


def read_dead_letters(servers: str, topic: str) -> list[DeadLetter]:
    """Every dead letter in ``topic`` (read committed), with its provenance."""
    letters: list[DeadLetter] = []
    with TopicReader(servers, topic, lambda r: letters.append(dead_letter_of(r))) as reader:
        reader.catch_up()
    return letters


def left_after_commit(servers: str, group: str, topics: Iterable[str], *, timeout_s: float = 60.0,
                      ) -> tuple[dict[tuple[str, int], int | None], dict[tuple[str, int], list[int]]]:
    """For every partition of ``topics``: ``group``'s committed offset (None: never
    committed) and the offsets of the data records a read_committed consumer reads from that
    offset (0 without a commit) up to the end (:func:`offsetlab.bus.testing.read_from_committed`)."""
    from offsetlab.bus import testing

    committed: dict[tuple[str, int], int | None] = {}
    after: dict[tuple[str, int], list[int]] = {}
    for topic in topics:
        offsets = testing.committed_offsets(servers, group, topic)
        for partition in testing.end_offsets(servers, topic):
            committed[(topic, partition)] = offsets.get(partition)
        for r in testing.read_from_committed(servers, group, topic, timeout_s=timeout_s,
                                             client_settings=_READ_COMMITTED):
            after.setdefault((topic, r.partition), []).append(r.offset)
    return committed, after


def where_seqs(servers: str, topic: str, seqs: Iterable[int], *, committed: bool = True,
               ) -> dict[int, list[tuple[int, int, int]]]:
    """(partition, offset, timestamp ms) of every record of ``topic`` holding one of ``seqs``,
    read with a fresh group-less consumer, ``read_committed`` or (``committed=False``)
    ``read_uncommitted`` (aborted records and open transactions included)."""
    wanted = set(seqs)
    found: dict[int, list[tuple[int, int, int]]] = {}
    from kafka import KafkaConsumer

    c = KafkaConsumer(bootstrap_servers=servers.split(","), group_id=None,
                      enable_auto_commit=False, allow_auto_create_topics=False,
                      isolation_level="read_committed" if committed else "read_uncommitted")
    try:
        tps = _partitions(c, topic)
        if not tps:
            return found
        c.assign(tps)
        c.seek_to_beginning(*tps)
        end = c.end_offsets(tps)
        deadline = Deadline(60.0)
        while any(c.position(tp) < end[tp] for tp in tps) and not deadline.expired():
            for records in c.poll(timeout_ms=200).values():
                for r in records:
                    seq = seq_of(r.value)
                    if seq in wanted:
                        found.setdefault(seq, []).append((r.partition, r.offset, r.timestamp))
    finally:
        c.close(autocommit=False)
    return found


def where_seqs_librdkafka(servers: str, topic: str, seqs: Iterable[int], *,
                          quiet_s: float = 5.0) -> dict[int, list[tuple[int, int, int]]]:
    """:func:`where_seqs` read committed by another client, confluent-kafka (librdkafka):
    every partition from the beginning until nothing arrived for ``quiet_s``."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer
    from confluent_kafka import TopicPartition as CTopicPartition

    wanted = set(seqs)
    found: dict[int, list[tuple[int, int, int]]] = {}
    c = Consumer({"bootstrap.servers": servers, "group.id": "chaos-forensics-unused",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        parts = c.list_topics(topic, timeout=30).topics[topic].partitions
        c.assign([CTopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            last = time.monotonic()
            seq = seq_of(msg.value())
            if seq in wanted:
                found.setdefault(seq, []).append((int(msg.partition() or 0), int(msg.offset() or 0), msg.timestamp()[1]))
    finally:
        c.close()
    return found
