"""confluent-kafka's quirks, in one place (confluent-kafka 2.16, librdkafka 2.16).

The bus's confluent-kafka transport and the lab's confluent-kafka experiments both import
these; nobody else works around the client. Each quirk says what was seen (embedded Kafka
4.1.1) and what the transport does about it.

- **A pause inside** ``on_assign`` **is lost unless the callback assigns first.** When the
  ``on_assign`` callback does not call ``assign()`` itself, confluent-kafka assigns *after*
  it returns, and the assignment resets the partitions' pause state: a partition the
  callback paused was fetched anyway. The transport calls ``assign()`` (or
  ``incremental_assign()`` for a cooperative protocol) first, then the runner's listener.
- **A seek right after an assignment fails with** ``_STATE`` ("Local: Erroneous state")
  until the partition's fetcher has started (a seek inside ``on_assign``, after
  ``assign()``, failed every time; 10 ms later it worked, also on a paused partition). The
  transport remembers such a seek (:data:`SEEK_NOT_READY`), drops records of that partition
  and applies the seek at its next ``poll()``.
- ``consume(n, timeout)`` **waits for n messages**: it returns early only with ``n``
  messages, so one record waits out the whole timeout (``consume(500, 1.0)`` took 1.0 s for
  one ready record). The transport takes what is there (``consume(n, 0)``), else waits for
  one message (``poll(timeout)``) and takes the rest that is there with it.
- **The generation is not in the API.** ``consumer_group_metadata()`` returns librdkafka's
  serialized group metadata (``b"CGMDv2:" + int32 generation + group id + member id``);
  :func:`generation_of` reads it (-1 where the format is unknown).
- **Commit errors that mean "the group moved on"** (:data:`REBALANCE_COMMIT_CODES`): after
  the member was dropped (max poll interval exceeded) ``commit()`` raised
  ``UNKNOWN_MEMBER_ID``; a rebalance, an old generation or a fenced member do the same.
- **The partitioner differs**: librdkafka hashes keys with CRC32 (``consistent_random``),
  Java and kafka-python with murmur2; the same key lands on another partition. The
  transport's producers default to ``murmur2_random`` (:data:`PRODUCER_DEFAULTS`).
- **Metadata requests of an admin client create topics.** An ``AdminClient`` is a producer
  handle underneath, whose ``allow.auto.create.topics`` defaults to true:
  ``list_topics(topic)`` of a missing topic created it (1 partition). The transport's
  admin client sets it false (:data:`ADMIN_DEFAULTS`).
- **A consumer does not create the topics it subscribes to**: librdkafka's
  ``allow.auto.create.topics`` defaults to false for consumers (kafka-python's
  ``allow_auto_create_topics`` to true); the transport keeps librdkafka's default (the bus
  creates its topics), ``allow_auto_create_topics=True`` gives kafka-python's behaviour.
- **The first group on a new cluster joins about a second late** (1 s after the consumer
  started here, 3 s on a loaded machine; 10 ms on a cluster that already had a group):
  while ``__consumer_offsets`` is being created librdkafka asks for the coordinator again
  at most once a second (kafka-python retries within 100 ms). Nothing to work around;
  experiments that time the first join should not start on a fresh broker.
- **subscribe() takes any topic name**; an invalid one only shows as a broker error much
  later. :func:`check_topics` raises ``ValueError`` first, as kafka-python does.
- **Nothing fails while the broker is unreachable**: building a client never connects, and
  a consumer polls an unreachable broker forever. The transport asks for metadata
  (``list_topics``) when it builds a client, bounded by ``bootstrap_timeout_ms``
  (kafka-python's bootstrap), and closes the client if that fails.
- **librdkafka logs to stderr** unless given a logger: the transport hands it
  :data:`LIBRDKAFKA_LOGGER` (Python logging), served on every poll.
- ``Consumer.close()`` **has no timeout** (it leaves the group and revokes through
  ``on_revoke``; it took 10 ms here).
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from confluent_kafka import KafkaError
from confluent_kafka import TopicPartition as ConfluentTopicPartition

from offsetlab.bus.types import TopicPartition

__all__ = [
    "to_confluent", "from_confluent", "generation_of", "check_topics",
    "REBALANCE_COMMIT_CODES", "CONSUMER_FATAL_CODES", "SEEK_NOT_READY", "QUIET_ERRORS",
    "PRODUCER_DEFAULTS", "ADMIN_DEFAULTS", "LIBRDKAFKA_LOGGER", "error_of",
]

LIBRDKAFKA_LOGGER = logging.getLogger("offsetlab.bus.transports.confluent.librdkafka")
"""Where librdkafka's own log lines go (its ``logger`` setting; a user's ``logger`` wins)."""

REBALANCE_COMMIT_CODES: frozenset[int] = frozenset({
    KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID, KafkaError.FENCED_INSTANCE_ID,
    KafkaError.STALE_MEMBER_EPOCH, KafkaError._ASSIGNMENT_LOST, KafkaError._NO_OFFSET,
})
"""Commit errors that only mean "the group moved on" (``_NO_OFFSET``: nothing of it was
committable any more): not a crash, the records are delivered again to the next owner."""

CONSUMER_FATAL_CODES: frozenset[int] = frozenset({
    KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.TOPIC_EXCEPTION,
})
"""Errors on a consumed message that end the consumer (raised from ``poll``), besides the
ones librdkafka itself calls fatal; others are logged (``_PARTITION_EOF`` is ignored)."""

SEEK_NOT_READY = KafkaError._STATE
"""``seek()``'s answer before the partition's fetcher started (see the module docstring)."""

QUIET_ERRORS: frozenset[int] = frozenset({
    KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE,
})
"""Connection errors librdkafka reports on every reconnect attempt: logged at INFO."""

PRODUCER_DEFAULTS: Mapping[str, Any] = MappingProxyType({
    "partitioner": "murmur2_random",  # Java's and kafka-python's key hash
    "linger.ms": 0,  # kafka-python's default (librdkafka: 5 ms on every publish)
})
ADMIN_DEFAULTS: Mapping[str, Any] = MappingProxyType({"allow.auto.create.topics": False})

_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")


def to_confluent(tp: Sequence[Any], offset: int | None = None) -> ConfluentTopicPartition:
    """A bus ``TopicPartition`` (any ``(topic, partition)``) as confluent-kafka's."""
    if offset is None:
        return ConfluentTopicPartition(tp[0], tp[1])
    return ConfluentTopicPartition(tp[0], tp[1], offset)


def from_confluent(tp: ConfluentTopicPartition) -> TopicPartition:
    """confluent-kafka's ``TopicPartition`` as the bus's (offset and error dropped)."""
    return TopicPartition(tp.topic, tp.partition)


def generation_of(metadata: object) -> int:
    """The generation in ``consumer.consumer_group_metadata()`` (serialized by librdkafka:
    ``b"CGMDv2:"`` then the generation as a native int32); -1 if it is not that format."""
    if isinstance(metadata, bytes) and metadata.startswith(b"CGMDv2:") and len(metadata) >= 11:
        generation: int = struct.unpack_from("=i", metadata, 7)[0]
        return generation
    return -1


def check_topics(topics: Iterable[str]) -> None:
    """``ValueError`` for a name Kafka does not accept (librdkafka's subscribe takes any)."""
    for topic in topics:
        if (not isinstance(topic, str) or not _LEGAL_TOPIC.match(topic) or len(topic) > 249
                or topic in (".", "..")):
            raise ValueError(f"{topic!r} is not a valid topic name: use 1 to 249 of "
                             "[a-zA-Z0-9._-] (not '.' or '..')")


def error_of(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` inside a confluent-kafka ``KafkaException`` (``None`` otherwise)."""
    error = exc.args[0] if exc.args else None
    return error if isinstance(error, KafkaError) else None
