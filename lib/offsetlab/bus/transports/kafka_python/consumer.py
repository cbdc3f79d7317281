"""The kafka-python group member behind the consumer runner's port.

:class:`KafkaPythonConsumer` adapts a ``KafkaConsumer`` (or whatever the caller's factory
builds, e.g. a test fake with the same methods) to
:class:`~offsetlab.bus.ports.ConsumerClient`. Records are kafka-python's own
``ConsumerRecord`` values (they have the :class:`~offsetlab.bus.types.Record` shape), so
the happy path adds nothing per record. kafka-python runs rebalance listeners on its IO
thread while ``poll()`` blocks; the runner only takes notes there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KafkaTopicPartition

from offsetlab.bus.config import RunnerConfig
from offsetlab.bus.ports import CommitRebalanced, RebalanceListener
from offsetlab.bus.transports.kafka_python.compat import (
    REBALANCE_COMMIT_ERRORS,
    io_threads,
    reap_io_threads,
    unpark_resumed,
    unstick_join,
)
from offsetlab.bus.types import Record, TopicPartition, sorted_partitions

__all__ = ["KafkaPythonConsumer", "consumer_kwargs"]

_log = logging.getLogger(__name__)


def consumer_kwargs(config: RunnerConfig) -> dict[str, Any]:
    """Keyword arguments for ``KafkaConsumer(**kwargs)`` (no topics: the runner subscribes)."""
    kwargs: dict[str, Any] = dict(config.consumer_settings)
    servers = config.bootstrap_servers
    kwargs.update(
        bootstrap_servers=list(servers) if isinstance(servers, tuple) else servers,
        group_id=config.group_id,
        client_id=config.name,
        enable_auto_commit=False,
    )
    return kwargs


class _Listener(ConsumerRebalanceListener):
    def __init__(self, listener: RebalanceListener) -> None:
        self._listener = listener

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._listener.on_revoked(sorted_partitions(revoked))

    def on_partitions_lost(self, lost: Any) -> None:
        self._listener.on_lost(sorted_partitions(lost))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._listener.on_assigned(sorted_partitions(assigned))


class KafkaPythonConsumer:
    """A ``KafkaConsumer`` as the runner's :class:`~offsetlab.bus.ports.ConsumerClient`."""

    def __init__(self, consumer: Any, name: str) -> None:
        self.consumer = consumer
        self.name = name

    @classmethod
    def open(cls, config: RunnerConfig,
             factory: Callable[..., Any] | None = None) -> KafkaPythonConsumer:
        before = io_threads()
        try:
            consumer = (factory or KafkaConsumer)(**consumer_kwargs(config))
        except BaseException:
            reap_io_threads(before, config.name)
            raise
        unpark_resumed(consumer)  # pause/resume (in-place retries, breakers) must not stall
        return cls(consumer, config.name)

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        self.consumer.subscribe(topics=list(topics), listener=_Listener(listener))

    def poll(self, timeout_ms: int) -> Sequence[Record]:
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        if unstick_join(self.consumer):
            _log.warning("consumer %s: kafka-python abandoned a finished group join; rejoining",
                         self.name)
        if not polled:
            return ()
        if len(polled) == 1:
            for records in polled.values():
                return records  # type: ignore[no-any-return]
        return [r for records in polled.values() for r in records]

    # kafka-python checks isinstance(tp, kafka.structs.TopicPartition): convert the bus's.
    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        if partitions:
            self.consumer.pause(*(KafkaTopicPartition(*tp) for tp in partitions))

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        if partitions:
            self.consumer.resume(*(KafkaTopicPartition(*tp) for tp in partitions))

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.consumer.seek(KafkaTopicPartition(*partition), offset)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(TopicPartition(tp.topic, tp.partition)
                         for tp in self.consumer.assignment() or ())

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            self.consumer.commit({KafkaTopicPartition(*tp): OffsetAndMetadata(off, "", -1)
                                  for tp, off in offsets.items()})
        except REBALANCE_COMMIT_ERRORS as exc:
            raise CommitRebalanced(f"{type(exc).__name__}: {exc}") from exc

    def group_metadata(self) -> tuple[str, int]:
        meta = self.consumer.group_metadata()
        return (str(getattr(meta, "member_id", "") or ""),
                int(getattr(meta, "generation_id", -1)))

    def transaction_metadata(self) -> Any:
        """kafka-python's ``ConsumerGroupMetadata`` (group, generation, member id) for
        ``send_offsets_to_transaction``: the broker refuses the offsets of a member the
        group has moved on from (KIP-447)."""
        return self.consumer.group_metadata()

    def close(self, timeout_ms: int) -> None:
        self.consumer.close(autocommit=False, timeout_ms=timeout_ms)
