"""The confluent-kafka group member behind the consumer runner's port.

:class:`ConfluentConsumer` adapts a ``confluent_kafka.Consumer`` (or whatever the caller's
factory builds from the settings dict, e.g. a test fake) to
:class:`~offsetlab.bus.ports.ConsumerClient`. Auto-commit and the automatic offset store
are off: the runner commits explicit offsets synchronously. Rebalance callbacks run inside
``poll()`` on the runner thread; the transport assigns first, then tells the runner's
listener (which may pause, and asks for ``assignment()`` and ``group_metadata()``).

Per record the transport builds one :class:`~offsetlab.bus.types.ConsumedRecord` (headers
as librdkafka gives them, timestamp in ms, type 0 CreateTime / 1 LogAppendTime); error
messages are dropped (``_PARTITION_EOF``), logged, or raised as the client's
``KafkaException`` when they end the consumer. The quirks handled here are described in
:mod:`offsetlab.bus.transports.confluent.compat`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as ConfluentTopicPartition

from offsetlab.bus.config import RunnerConfig, servers_text
from offsetlab.bus.ports import CommitRebalanced, RebalanceListener
from offsetlab.bus.transports.confluent.compat import (
    CONSUMER_FATAL_CODES,
    LIBRDKAFKA_LOGGER,
    QUIET_ERRORS,
    REBALANCE_COMMIT_CODES,
    SEEK_NOT_READY,
    check_topics,
    error_of,
    generation_of,
)
from offsetlab.bus.transports.confluent.settings import CONSUMER, translate
from offsetlab.bus.types import ConsumedRecord, Record, TopicPartition, sorted_partitions

__all__ = ["ConfluentConsumer", "consumer_config"]

_log = logging.getLogger(__name__)

DEFAULT_BATCH = 500
"""Records per ``poll()`` without ``max_poll_records`` (kafka-python's default)."""
DEFAULT_BOOTSTRAP_TIMEOUT_MS = 30_000
"""How long opening a consumer waits for the broker's first metadata answer (kafka-python's
``bootstrap_timeout_ms`` default)."""

# librdkafka's accessors are typed Optional; a consumed message has every field


def consumer_config(config: RunnerConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(librdkafka settings, transport options)`` of a runner's consumer."""
    conf, options = translate(config.consumer_settings, CONSUMER)
    conf.update({
        "bootstrap.servers": servers_text(config.bootstrap_servers),
        "group.id": config.group_id,
        "client.id": config.name,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    })
    conf.setdefault("logger", LIBRDKAFKA_LOGGER)
    return conf, options


def _incremental(conf: Mapping[str, Any]) -> bool:
    strategy = str(conf.get("partition.assignment.strategy", ""))
    return "cooperative" in strategy or conf.get("group.protocol") == "consumer"


class ConfluentConsumer:
    """A ``confluent_kafka.Consumer`` as the runner's
    :class:`~offsetlab.bus.ports.ConsumerClient`."""

    def __init__(self, consumer: Any, name: str, *, batch: int = DEFAULT_BATCH,
                 incremental: bool = False) -> None:
        self.consumer = consumer
        self.name = name
        self._batch = max(1, int(batch))
        self._incremental = incremental
        self._listener: RebalanceListener | None = None
        self._assignment: frozenset[TopicPartition] = frozenset()
        self._pending_seeks: dict[TopicPartition, int] = {}
        self._fatal: KafkaError | None = None

    @classmethod
    def open(cls, config: RunnerConfig,
             factory: Callable[..., Any] | None = None) -> ConfluentConsumer:
        """Build the consumer and wait for the broker's metadata (``bootstrap_timeout_ms``);
        on failure the consumer is closed before the error propagates."""
        conf, options = consumer_config(config)
        client = cls(None, config.name, batch=options.get("max_poll_records", DEFAULT_BATCH),
                     incremental=_incremental(conf))
        conf["error_cb"] = client._on_error
        client.consumer = consumer = (factory or Consumer)(conf)
        try:
            timeout_ms = options.get("bootstrap_timeout_ms", DEFAULT_BOOTSTRAP_TIMEOUT_MS)
            list_topics = getattr(consumer, "list_topics", None)  # a fake may not have it
            if list_topics is not None:
                list_topics(timeout=timeout_ms / 1000)
        except BaseException:
            try:
                consumer.close()
            except Exception:
                _log.debug("closing a consumer that failed to bootstrap raised", exc_info=True)
            raise
        return client

    # -- callbacks (inside poll(), on the runner thread) --------------------------------

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
        level = logging.INFO if error.code() in QUIET_ERRORS else logging.WARNING
        _log.log(level, "consumer %s: %s", self.name, error)

    def _on_assign(self, consumer: Any, partitions: list[ConfluentTopicPartition]) -> None:
        if self._incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        tps = sorted_partitions((p.topic, p.partition) for p in partitions)
        self._assignment = (self._assignment | frozenset(tps)) if self._incremental \
            else frozenset(tps)
        if self._listener is not None:
            self._listener.on_assigned(tps)

    def _forget(self, partitions: list[ConfluentTopicPartition]) -> tuple[TopicPartition, ...]:
        tps = sorted_partitions((p.topic, p.partition) for p in partitions)
        self._assignment = (self._assignment - frozenset(tps)) if self._incremental \
            else frozenset()
        for tp in tps:
            self._pending_seeks.pop(tp, None)
        return tps

    def _on_revoke(self, consumer: Any, partitions: list[ConfluentTopicPartition]) -> None:
        tps = self._forget(partitions)
        if self._listener is not None:
            self._listener.on_revoked(tps)

    def _on_lost(self, consumer: Any, partitions: list[ConfluentTopicPartition]) -> None:
        tps = self._forget(partitions)
        if self._listener is not None:
            self._listener.on_lost(tps)

    # -- the port -------------------------------------------------------------------------

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        check_topics(topics)
        self._listener = listener
        self.consumer.subscribe(list(topics), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)

    def poll(self, timeout_ms: int) -> Sequence[Record]:
        if self._pending_seeks:
            self._retry_seeks()
        consumer = self.consumer
        messages = consumer.consume(self._batch, 0)
        if not messages:
            first = consumer.poll(timeout_ms / 1000)
            if first is None:
                if self._fatal is not None:
                    raise KafkaException(self._fatal)
                return ()
            messages = [first]
            if self._batch > 1:
                messages.extend(consumer.consume(self._batch - 1, 0))
        if self._fatal is not None:
            raise KafkaException(self._fatal)
        return self._records(messages)

    def _records(self, messages: list[Message]) -> list[Record]:
        out: list[Record] = []
        append, pending = out.append, self._pending_seeks
        # tuple.__new__ makes a ConsumedRecord in 0.2 us (0.5 us through its __new__)
        new, cls = tuple.__new__, ConsumedRecord
        for m in messages:
            error = m.error()
            if error is not None:
                self._message_error(error, m)
                continue
            if pending and (m.topic(), m.partition()) in pending:
                continue  # fetched before a seek that is still to be applied
            ts_type, ts = m.timestamp()
            append(new(cls, (m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                             m.headers() or (), ts if ts_type else -1,
                             1 if ts_type == 2 else 0)))
        return out

    def _message_error(self, error: KafkaError, message: Message) -> None:
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            return
        if error.fatal() or code in CONSUMER_FATAL_CODES:
            raise KafkaException(error)
        _log.warning("consumer %s: %s (topic %s, partition %s)", self.name, error,
                     message.topic(), message.partition())

    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        if partitions:
            self.consumer.pause([ConfluentTopicPartition(t, p) for t, p in partitions])

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        if partitions:
            self.consumer.resume([ConfluentTopicPartition(t, p) for t, p in partitions])

    def seek(self, partition: TopicPartition, offset: int) -> None:
        tp = TopicPartition(partition[0], partition[1])
        try:
            self.consumer.seek(ConfluentTopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:
            error = error_of(exc)
            if error is None or error.code() != SEEK_NOT_READY:
                raise
            _log.debug("consumer %s: seek %s to %d before its fetcher started; applied at the "
                       "next poll", self.name, tp, offset)
            self._pending_seeks[tp] = offset
            return
        self._pending_seeks.pop(tp, None)

    def _retry_seeks(self) -> None:
        for tp, offset in list(self._pending_seeks.items()):
            if tp not in self._assignment:
                del self._pending_seeks[tp]
                continue
            self.seek(tp, offset)

    def assignment(self) -> frozenset[TopicPartition]:
        return self._assignment

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        wanted = [ConfluentTopicPartition(tp[0], tp[1], off) for tp, off in offsets.items()]
        try:
            result = self.consumer.commit(offsets=wanted, asynchronous=False)
        except KafkaException as exc:
            error = error_of(exc)
            if error is not None and error.code() in REBALANCE_COMMIT_CODES:
                raise CommitRebalanced(f"{error.name()}: {error.str()}") from exc
            raise
        for tp in result or ():
            error = tp.error
            if error is None:
                continue
            if error.code() in REBALANCE_COMMIT_CODES:
                raise CommitRebalanced(f"{error.name()} for {tp.topic}[{tp.partition}]: "
                                       f"{error.str()}")
            raise KafkaException(error)

    def transaction_metadata(self) -> Any:
        """librdkafka's opaque group metadata (the bus's transactional mode is kafka-python
        only; this is for completeness of the port)."""
        return self.consumer.consumer_group_metadata()

    def group_metadata(self) -> tuple[str, int]:
        member = self.consumer.memberid() or ""
        try:
            generation = generation_of(self.consumer.consumer_group_metadata())
        except KafkaException:
            generation = -1
        return str(member), generation

    def close(self, timeout_ms: int) -> None:
        """Leave the group without committing (``Consumer.close()`` has no timeout: it
        revokes through ``on_revoke`` and sends LeaveGroup)."""
        self.consumer.close()
