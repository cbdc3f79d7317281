"""The transactional mode's producer on kafka-python 3.0.x: :class:`TransactionalProducer`.

One per transactional subscription, with a fixed ``transactional_id``. Every poll batch is
one transaction: ``begin``, the batch's retry copies, dead letters and handler publishes,
then ``commit(offsets, consumer)``: ``send_offsets_to_transaction`` with the consumer's
group metadata (KIP-447: the group coordinator refuses the offsets of a member the group
has moved on from) and ``commit_transaction``. Readers with
``isolation_level="read_committed"`` see all of a batch's writes or none.

**Fencing.** The producer is built (and ``init_transactions`` called) when the subscription
starts (``prepare``), and again on the ``begin`` after a producer was dropped. ``init_transactions`` bumps the id's epoch: an older producer with the same id
is fenced (its next transactional call fails with ``ProducerFencedError``) and the
transaction it left open is aborted at once, instead of staying open (and holding every
``read_committed`` reader of its partitions at the last stable offset) until the
transaction timeout. So a worker that replaces a killed one under the same id (a *worker
slot*) cleans up the dead worker's transaction before it processes anything. A producer
that is fenced raises :class:`~offsetlab.bus.errors.TransactionFenced`: this member is the
zombie and must stop (restarting would fence the replacement back).

**Bounded waits.** kafka-python's ``send_offsets_to_transaction``, ``commit_transaction``
and ``abort_transaction`` wait without a timeout (3.0.12); here they wait at most
``timeout_s`` (the bus's ``reproduce_timeout_s``) through the transaction manager's result
objects (``_transaction_manager``, a private attribute: the one place this module relies on
one). Before the commit every write of the transaction must have been acknowledged and the
batch's consumer must have been a group member (see :meth:`TransactionalProducer.commit`);
otherwise it aborts. A commit or abort that does not finish in time means the client is stuck (the same
failure the bus's publish producer is replaced for after a broker restart): the producer is
closed without waiting and the next ``begin`` builds a new one **with the same id**, whose
``init_transactions`` fences the stuck one and completes or aborts its transaction on the
broker. Either way the batch counts as aborted and its records are delivered again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KafkaTopicPartition

from offsetlab.bus.config import servers_text
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.errors import (
    BusStateError,
    PublishError,
    TransactionAborted,
    TransactionError,
    TransactionFenced,
)
from offsetlab.bus.interface import Receipt
from offsetlab.bus.ports import Headers
from offsetlab.bus.transports.kafka_python.compat import close_now, io_threads, reap_io_threads
from offsetlab.bus.transports.kafka_python.producer import _describe, producer_kwargs
from offsetlab.bus.types import TopicPartition

__all__ = ["TransactionalProducer"]

_log = logging.getLogger("offsetlab.bus.transactions")

_FENCED = (kafka_errors.ProducerFencedError, kafka_errors.InvalidProducerEpochError)


class TransactionalProducer:
    """See the module docstring. Used from one thread (the subscription's runner)."""

    def __init__(self, *, bootstrap_servers: str | tuple[str, ...], transactional_id: str,
                 client_id: str, client_settings: Mapping[str, Any],
                 settings: Mapping[str, Any], timeout_s: float) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.transactional_id = transactional_id
        self.timeout_s = timeout_s
        self._kwargs = producer_kwargs(bootstrap_servers=bootstrap_servers, client_id=client_id,
                                       client_settings=client_settings, settings=settings,
                                       timeout_s=timeout_s)
        self._kwargs["transactional_id"] = transactional_id
        self._producer: KafkaProducer | None = None
        self._open = False
        #: every write of the open transaction, and the first that failed at once
        self._sent: list[FutureRecordMetadata] = []
        self._refused: BaseException | None = None
        self._closed = False
        self._lock = threading.Lock()
        #: producers built (1 + replacements of stuck or failed ones)
        self.generations = 0

    def kwargs(self) -> dict[str, Any]:
        """The keywords the producer is (or will be) built with."""
        return dict(self._kwargs)

    def _what(self) -> str:
        return (f"transactional id {self.transactional_id!r} (bootstrap servers "
                f"{servers_text(self.bootstrap_servers)}, timeout {self.timeout_s:g} s)")

    # -- the producer ----------------------------------------------------------------------
    def _build(self) -> KafkaProducer:
        with self._lock:
            if self._closed:
                raise BusStateError(f"{self._what()}: the KafkaBus is closed; make a new bus")
            if self._producer is not None:
                return self._producer
            before = io_threads()
            try:
                producer = KafkaProducer(**self._kwargs)
            except Exception as exc:
                reap_io_threads(before, self._kwargs["client_id"])
                raise TransactionError(f"the transactional producer could not connect: "
                                       f"{self._what()}: {_describe(exc)}") from exc
            try:
                producer.init_transactions()  # fences an older producer with this id
            except Exception as exc:
                self._close_quietly(producer)
                if isinstance(exc, _FENCED):
                    raise TransactionFenced(f"init_transactions was fenced: {self._what()}: "
                                            f"{_describe(exc)}") from exc
                raise TransactionError(f"init_transactions failed: {self._what()}: "
                                       f"{_describe(exc)}") from exc
            self._producer = producer
            self.generations += 1
            return producer

    @staticmethod
    def _close_quietly(producer: KafkaProducer) -> None:
        close_now(producer)  # being replaced because it failed: nothing to wait for

    def _discard(self) -> None:
        """Drop the producer (the next ``begin`` builds one with the same id, fencing it)."""
        with self._lock:
            producer, self._producer = self._producer, None
        self._open = False
        if producer is not None:
            self._close_quietly(producer)

    def prepare(self) -> None:
        """Build the producer and run ``init_transactions`` now (the subscription's start):
        a worker that replaces a killed one fences it and aborts its open transaction before
        it joins the group, not at its first batch (which may never come if it gets no
        partitions with records, leaving the dead transaction open until its timeout)."""
        self._build()

    # -- one batch's transaction -----------------------------------------------------------
    def begin(self) -> None:
        if self._open:
            raise TransactionError(f"begin() with a transaction open: {self._what()}")
        producer = self._build()
        try:
            producer.begin_transaction()
        except _FENCED as exc:
            self._discard()
            raise TransactionFenced(f"fenced: {self._what()}: {_describe(exc)}") from exc
        except kafka_errors.KafkaError as exc:  # a failed earlier transaction: start afresh
            self._discard()
            raise TransactionError(f"begin_transaction failed: {self._what()}: "
                                   f"{_describe(exc)}") from exc
        self._open = True
        self._sent = []
        self._refused = None

    def in_transaction(self) -> bool:
        return self._open

    def _in_txn(self, what: str) -> KafkaProducer:
        if not self._open or self._producer is None:
            raise TransactionError(f"{what} outside a transaction: {self._what()}")
        return self._producer

    def send(self, topic: str, value: bytes | None, key: bytes | None,
             headers: Headers) -> FutureRecordMetadata:
        """Write a record a handler published (visible to read_committed readers at commit)."""
        return self.send_copy(topic, value, key, headers, None)

    def send_copy(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
                  partition: int | None) -> FutureRecordMetadata:
        producer = self._in_txn("send")
        try:
            future = producer.send(topic, value=value, key=key, headers=list(headers),
                                   partition=partition)
        except kafka_errors.KafkaError as exc:
            self._refused = self._refused or exc  # the transaction must not commit now
            raise self._error(topic, exc) from exc
        self._sent.append(future)
        return future

    def partitions(self, topic: str) -> frozenset[int]:
        producer = self._producer or self._build()
        try:
            return frozenset(producer.partitions_for(topic) or ())
        except kafka_errors.KafkaError as exc:
            raise self._error(topic, exc) from exc

    def wait_all(self, items: Sequence[tuple[str, FutureRecordMetadata]]
                 ) -> list[Receipt | PublishError]:
        deadline = Deadline(self.timeout_s)
        out: list[Receipt | PublishError] = []
        for topic, future in items:
            try:
                meta = future.get(timeout=deadline.left())
            except kafka_errors.KafkaError as exc:
                out.append(self._error(topic, exc))
            else:
                out.append(Receipt(meta.topic, meta.partition, meta.offset))
        return out

    def _error(self, topic: str, exc: BaseException) -> PublishError:
        error = PublishError(f"transactional write to topic {topic!r} failed ({self._what()}; "
                             f"{_describe(exc)}); the batch's transaction will be aborted")
        error.__cause__ = exc
        return error

    def _wait(self, producer: KafkaProducer, result: Any, what: str, deadline: Deadline) -> None:
        producer._sender.wakeup()
        if not result.wait(timeout_ms=max(1, round(deadline.left() * 1000))):
            raise kafka_errors.KafkaTimeoutError(f"{what} did not finish within "
                                                 f"{self.timeout_s:g} s")

    def _check_writes(self, producer: KafkaProducer, deadline: Deadline) -> None:
        """Every write of the transaction acknowledged, or raise. kafka-python 3.0.12 lets a
        transaction commit after one of its batches expired (a retriable error that ran out
        of ``delivery_timeout_ms`` fails the batch "without any state transition"): without
        this check the commit would carry offsets past records whose outputs were never
        written (``offsetlab chaos --consumer bus-eos`` lost 17 outputs that way)."""
        if self._refused is not None:
            raise self._refused
        producer.flush(timeout=max(0.001, deadline.left()))
        for future in self._sent:
            if not future.is_done:
                raise kafka_errors.KafkaTimeoutError("a write of the transaction was not "
                                                     f"acknowledged within {self.timeout_s:g} s")
            if future.failed():
                raise future.exception

    @staticmethod
    def _check_member(group_metadata: Any) -> None:
        """The batch's group metadata names a member of a generation. kafka-python resets a
        member the group dropped to generation -1 and no member id, and the broker accepts
        offsets with those without checking membership: the dropped member would commit
        offsets of partitions the group has given to someone else (a duplicate)."""
        generation = getattr(group_metadata, "generation_id", -1)
        member = getattr(group_metadata, "member_id", "")
        if generation is None or generation < 0 or not member:
            raise kafka_errors.CommitFailedError(
                f"the batch's consumer was not a group member (generation {generation}, "
                f"member id {member!r}): its offsets are not committed")

    def commit(self, offsets: Mapping[TopicPartition, int], group_metadata: Any) -> None:
        """Check that every write of the transaction was acknowledged, add ``offsets`` (the
        next offsets, as the runner commits them) with ``group_metadata`` (the consumer's
        ``ConsumerGroupMetadata`` taken when the batch began: the group coordinator refuses
        it once the group has moved on, KIP-447), then commit. On failure: abort (or drop a
        stuck producer) and raise :class:`TransactionAborted`; :class:`TransactionFenced`
        if fenced."""
        producer = self._in_txn("commit")
        deadline = Deadline(self.timeout_s)
        manager = producer._transaction_manager
        try:
            self._check_writes(producer, deadline)
            if offsets:
                self._check_member(group_metadata)
                result = manager.send_offsets_to_transaction(
                    {KafkaTopicPartition(tp[0], tp[1]): OffsetAndMetadata(off, "", -1)
                     for tp, off in offsets.items()}, group_metadata)
                self._wait(producer, result, "send_offsets_to_transaction", deadline)
            self._wait(producer, manager.begin_commit(), "commit_transaction", deadline)
        except _FENCED as exc:
            self._discard()
            raise TransactionFenced(f"fenced at commit: {self._what()}: {_describe(exc)}") from exc
        except Exception as exc:
            why = _describe(exc)
            self._abort_after(exc)
            raise TransactionAborted(f"commit of {len(offsets)} offsets failed and the "
                                     f"transaction was aborted: {self._what()}: {why}") from exc
        self._open = False
        self._sent = []

    def _abort_after(self, exc: BaseException) -> None:
        if isinstance(exc, kafka_errors.KafkaTimeoutError):
            _log.warning("%s: stuck (%s); replacing the producer", self._what(), _describe(exc))
            self._discard()
            return
        try:
            self.abort()
        except TransactionError:
            pass  # abort() discarded the producer

    def abort(self) -> None:
        """Abort the open transaction (its writes are discarded); a producer that cannot
        abort within the timeout is replaced (the replacement's init fences it)."""
        producer = self._producer
        self._open = False
        self._sent = []
        if producer is None:
            return
        try:
            self._wait(producer, producer._transaction_manager.begin_abort(), "abort_transaction",
                       Deadline(self.timeout_s))
        except Exception as exc:
            self._discard()
            if isinstance(exc, _FENCED):
                raise TransactionFenced(f"fenced at abort: {self._what()}") from exc
            raise TransactionError(f"abort failed, producer replaced: {self._what()}: "
                                   f"{_describe(exc)}") from exc

    def close(self, timeout_s: float = 10.0) -> None:
        with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is None:
            return
        if self._open:
            self._open = False
            try:
                self._wait(producer, producer._transaction_manager.begin_abort(),
                           "abort_transaction", Deadline(timeout_s))
            except Exception:  # closing: the broker aborts it at the transaction timeout
                pass
        try:
            producer.close(timeout=timeout_s)
        except Exception:  # records still pending after the timeout: drop them
            close_now(producer)
