"""The ports between the bus's client-independent core and a client library (a *transport*).

A transport (:mod:`offsetlab.bus.transports`) implements these for one client library:
kafka-python or confluent-kafka. The consumer runner only talks to a :class:`ConsumerClient`,
the Kafka bus only to a :class:`ProducerClient` and an :class:`AdminClient`; neither imports
a client library. Everything a client does differently (its settings, its errors, its
workarounds) stays behind these ports, in the transport's package.

Types crossing a port are the bus's own: :class:`~offsetlab.bus.types.TopicPartition`,
:class:`~offsetlab.bus.types.Record`, :class:`~offsetlab.bus.interface.Receipt`,
:class:`~offsetlab.bus.errors.PublishError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from offsetlab.bus.types import Record, TopicPartition

if TYPE_CHECKING:
    from offsetlab.bus.config import RunnerConfig
    from offsetlab.bus.errors import PublishError
    from offsetlab.bus.interface import Receipt

__all__ = [
    "RebalanceListener", "ConsumerClient", "CommitRebalanced", "ProducerClient",
    "AdminClient", "TransactionClient", "Transport", "Headers", "CopyHandle",
]

Headers = Sequence[tuple[str, bytes]]
CopyHandle = Any
"""What :meth:`ProducerClient.send_copy` returns: the transport's pending acknowledgement."""


class CommitRebalanced(Exception):
    """A commit the group refused because it moved on (rebalance in progress, generation or
    member unknown): not a crash, the records are delivered again to the next owner."""


class RebalanceListener(Protocol):
    """Told of assignment changes; may be called on a client thread (kafka-python's IO
    thread) or inside :meth:`ConsumerClient.poll` (confluent-kafka)."""

    def on_assigned(self, partitions: tuple[TopicPartition, ...]) -> None: ...
    def on_revoked(self, partitions: tuple[TopicPartition, ...]) -> None: ...
    def on_lost(self, partitions: tuple[TopicPartition, ...]) -> None: ...


class ConsumerClient(Protocol):
    """One group member of one client library, used from one thread (the runner's)."""

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None: ...
    def poll(self, timeout_ms: int) -> Sequence[Record]:
        """Records fetched now, in offset order per partition (the group join and
        rebalances happen in here); ``[]`` when none arrived within ``timeout_ms``."""
        ...
    def pause(self, partitions: Sequence[TopicPartition]) -> None: ...
    def resume(self, partitions: Sequence[TopicPartition]) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    def assignment(self) -> frozenset[TopicPartition]: ...
    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the *next* offsets synchronously; :class:`CommitRebalanced` when the
        group refused because it moved on; other failures raise the client's error."""
        ...
    def group_metadata(self) -> tuple[str, int]:
        """``(member_id, generation)`` now (``("", -1)`` where the client does not tell)."""
        ...
    def transaction_metadata(self) -> Any:
        """The client's own group metadata object for a transactional offset commit
        (transactional mode only; clients without one raise)."""
        ...
    def close(self, timeout_ms: int) -> None:
        """Leave the group (no commit) and release the client."""
        ...


class ProducerClient(Protocol):
    """The Kafka bus's two producers: ``publish`` (bounded, per call) and ``reproduce``
    (retry copies and dead letters, acknowledged together once per batch)."""

    bootstrap_servers: str | tuple[str, ...]

    def publish(self, topic: str, value: bytes | None, key: bytes | None,
                headers: Headers) -> Receipt: ...
    def publish_many(self, records: Sequence[tuple[str, bytes | None, bytes | None, Headers]]
                     ) -> list[Receipt]: ...
    def send_copy(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
                  partition: int | None) -> CopyHandle: ...
    def partitions(self, topic: str) -> frozenset[int]: ...
    def wait_all(self, items: Sequence[tuple[str, CopyHandle]]) -> list[Receipt | PublishError]: ...
    def close(self, timeout_s: float = 10.0) -> None: ...


class TransactionClient(Protocol):
    """One subscription's transactional producer (transactional mode): one transaction per
    poll batch holds the batch's retry copies, dead letters, handler publishes and consumed
    offsets. ``begin`` before the batch's handler runs; ``send_copy``/``wait_all``/
    ``partitions`` as :class:`ProducerClient`'s, inside the transaction; ``send`` writes a
    record a handler published; ``commit(offsets, group_metadata)`` checks every write was
    acknowledged, adds the offsets with the consumer's group metadata taken when the batch
    began (the broker refuses it once the group moved on) and commits, or aborts and raises
    :class:`~offsetlab.bus.errors.TransactionAborted`;
    :class:`~offsetlab.bus.errors.TransactionFenced` when a newer producer took the id."""

    transactional_id: str

    def prepare(self) -> None:
        """Connect and take over the transactional id now (fencing an older producer)."""
        ...
    def begin(self) -> None: ...
    def in_transaction(self) -> bool: ...
    def send(self, topic: str, value: bytes | None, key: bytes | None,
             headers: Headers) -> CopyHandle: ...
    def send_copy(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
                  partition: int | None) -> CopyHandle: ...
    def partitions(self, topic: str) -> frozenset[int]: ...
    def wait_all(self, items: Sequence[tuple[str, CopyHandle]]) -> list[Receipt | PublishError]: ...
    def commit(self, offsets: Mapping[TopicPartition, int], group_metadata: Any) -> None: ...
    def abort(self) -> None: ...
    def close(self, timeout_s: float = 10.0) -> None: ...


class AdminClient(Protocol):
    """Topic administration the bus needs at ``subscribe``: look up and create topics."""

    def partition_count(self, topic: str) -> int | None:
        """Partitions of ``topic``, ``None`` when it does not exist."""
        ...
    def create(self, topics: Sequence[str], partitions: int) -> None:
        """Create ``topics`` (existing ones are left alone) and wait until they show."""
        ...
    def close(self) -> None: ...


class Transport(Protocol):
    """One client library under the bus (see :mod:`offsetlab.bus.transports`)."""

    name: str

    def check_consumer_settings(self, settings: Mapping[str, Any], owner: str) -> dict[str, Any]:
        """Validated consumer settings (``ConfigError`` naming ``owner`` and the key)."""
        ...
    def check_producer_settings(self, settings: Mapping[str, Any], owner: str) -> dict[str, Any]: ...
    def check_client_settings(self, settings: Mapping[str, Any], owner: str) -> dict[str, Any]: ...
    def consumer_keys(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The part of shared client settings a consumer understands."""
        ...
    def open_consumer(self, config: RunnerConfig,
                      factory: Callable[..., Any] | None) -> ConsumerClient:
        """Build and bootstrap a group member (``factory`` replaces the client's consumer
        class, e.g. a test fake); nothing is left running when it raises."""
        ...
    def producers(self, **kwargs: Any) -> ProducerClient: ...
    def transactional(self, **kwargs: Any) -> TransactionClient:
        """A transactional producer (``ConfigError`` where the client has none here)."""
        ...
    def admin(self, *, bootstrap_servers: str | tuple[str, ...], client_id: str,
              client_settings: Mapping[str, Any], timeout_s: float) -> AdminClient: ...
