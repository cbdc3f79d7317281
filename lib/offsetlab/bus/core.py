"""The subscription core: one executor of :func:`~offsetlab.bus.interface.process_record`
verdicts, shared by every bus.

A bus delivers records; the core decides and carries out what happens to each through a
small port (:class:`MemberPort`) that the bus implements for its kind of consumer:

=====================  ===================================================================
verdict                what the core asks of the port
=====================  ===================================================================
settle / skip          ``settle(record)``: counts toward the commit (offset + 1)
seek back (in place)   ``seek(tp, offset)`` (or a wait, with a backoff); the attempt count
                       is kept here, per partition and offset (in-place retries write no
                       header)
wait (not-before)      ``pause([tp])`` until the due time; :meth:`SubscriptionCore.resume_due`
                       resumes it
hold (breaker open)    ``pause(assignment)``; :meth:`SubscriptionCore.sync_breakers` resumes
reproduce / dead       ``send_copy(...)`` now, ``wait_all(...)`` once at the end of the
letter                 batch; a copy not acknowledged leaves its record unsettled and the
                       partition waits :data:`REPRODUCE_FAILURE_WAIT_S`
=====================  ===================================================================

The Kafka subscription's port is the consumer runner's
:class:`~offsetlab.bus.batch.BatchContext` plus the bus's reproduce producer; the in-memory
bus's port commits at once and produces synchronously. Both get what they need from their
bus through a :class:`SubscriptionContext`, never through the bus's private members.

Activity records (:class:`~offsetlab.bus.interface.Activity`) are built by one function,
:func:`make_activity`, and only when the context says someone listens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from offsetlab.bus.breaker import BreakerState
from offsetlab.bus.errors import EnvelopeError, PublishError
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.handler_publishes import HandlerPublishes
from offsetlab.bus.headers import SourceRecord, delivery_of, failure_headers
from offsetlab.bus.interface import (
    Activity,
    ActivityKind,
    Receipt,
    SubscriptionSpec,
    Verdict,
    VerdictKind,
    outcome_verdict,
    process_record,
)
from offsetlab.bus.outcomes import OK
from offsetlab.bus.ports import CopyHandle, Headers, TransactionClient
from offsetlab.bus.retry import Action, Decision
from offsetlab.bus.types import TopicPartition, tp_of

__all__ = ["REPRODUCE_FAILURE_WAIT_S", "MemberPort", "CopyPort", "SubscriptionContext",
           "SubscriptionCore", "make_activity", "Reporter"]

#: Seconds a partition waits after a retry copy or dead letter was not acknowledged.
REPRODUCE_FAILURE_WAIT_S = 1.0


def make_activity(
    kind: ActivityKind,
    at: float,
    *,
    spec: SubscriptionSpec | None = None,
    record: Any = None,
    event: Event | None = None,
    topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
    attempt: int | None = None,
    target_topic: str | None = None,
    detail: str = "",
) -> Activity:
    """The one builder of :class:`Activity` records (a record gives topic, partition,
    offset and key)."""
    if record is not None:
        topic, partition, offset, key = record.topic, record.partition, record.offset, record.key
    return Activity(
        kind=kind, at=at,
        subscription=spec.name if spec else None, group=spec.group if spec else None,
        topic=topic, partition=partition, offset=offset,
        key=key.decode("utf-8", "replace") if key is not None else None,
        event_type=event.event_type if event else None,
        event_id=event.event_id if event else None,
        attempt=attempt, target_topic=target_topic, detail=detail,
    )


class Reporter(Protocol):
    """``report(kind, spec=..., record=..., ...)``: the bus records an activity."""

    def __call__(self, kind: ActivityKind, *, spec: SubscriptionSpec | None = None,
                 record: Any = None, event: Event | None = None, topic: str | None = None,
                 partition: int | None = None, offset: int | None = None,
                 key: bytes | None = None, attempt: int | None = None,
                 target_topic: str | None = None, detail: str = "") -> None: ...


class CopyPort(Protocol):
    """Where retry copies and dead letters go (the bus's reproduce producer)."""

    def send_copy(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
                  partition: int | None) -> CopyHandle: ...
    def wait_all(self, items: Sequence[tuple[str, CopyHandle]]) -> list[Receipt | PublishError]: ...
    def partitions(self, topic: str) -> frozenset[int]: ...


@dataclass(frozen=True)
class SubscriptionContext:
    """What a subscription needs from its bus, given explicitly.

    ``listening()`` says whether activities are wanted (the happy path builds none
    otherwise); ``now()`` is the bus's clock in epoch seconds.
    """

    registry: EventRegistry
    report: Reporter
    listening: Callable[[], bool]
    copies: CopyPort
    now: Callable[[], float] = time.time
    include_stacktrace: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: transactional mode: the buffer of what handlers publish, and the transaction the
    #: settled records' publishes are written into (``copies`` is then that transaction)
    publishes: HandlerPublishes | None = None
    transaction: TransactionClient | None = None


class MemberPort(Protocol):
    """What the core does to the consumer it serves (one poll batch's view)."""

    def settle(self, record: Any) -> None: ...
    def seek(self, tp: TopicPartition, offset: int) -> None: ...
    def pause(self, tps: Iterable[TopicPartition]) -> None: ...
    def resume(self, tps: Iterable[TopicPartition]) -> None: ...
    def paused(self) -> frozenset[TopicPartition]: ...
    def assignment(self) -> frozenset[TopicPartition]: ...
    def stopping(self) -> bool: ...


@dataclass
class _Copy:
    record: Any
    tp: TopicPartition
    event: Event | None
    decision: Decision
    handle: CopyHandle


class SubscriptionCore:
    """The per-subscription executor and member state (see the module docstring).

    Member state is what a Kafka consumer loses at a rebalance: in-place attempt counts,
    due times of waiting partitions, and whether it paused for an open breaker. Call
    :meth:`forget` with the partitions a rebalance took away.
    """

    def __init__(self, spec: SubscriptionSpec, context: SubscriptionContext) -> None:
        self.spec = spec
        self.context = context
        self.in_place: dict[TopicPartition, tuple[int, int]] = {}  # tp -> (offset, attempt)
        self.waiting: dict[TopicPartition, float] = {}  # tp -> due (epoch seconds)
        self.breaker_paused = False
        self._partitions: dict[str, frozenset[int]] = {}

    # -- one batch -----------------------------------------------------------------------

    def handle(self, records: Sequence[Any], port: MemberPort) -> int:
        """Carry out the verdicts of ``records`` (one poll batch, in order).

        Returns how many records were acted on (all but those left waiting or held).
        Records of a partition the batch sought, paused or held are left alone: the
        consumer delivers them again.

        Transactional mode: what a handler publishes is written into the batch's
        transaction when its record settles, and dropped otherwise
        (:mod:`offsetlab.bus.handler_publishes`).
        """
        publishes = self.context.publishes
        if publishes is None:
            return self._handle(records, port, None)
        publishes.open()
        try:
            return self._handle(records, port, publishes)
        finally:
            publishes.close()

    def _write_published(self, publishes: HandlerPublishes) -> None:
        txn = self.context.transaction
        assert txn is not None
        for topic, value, key, headers in publishes.take():
            txn.send(topic, value, key, headers)  # a failed write aborts the transaction

    def _handle(self, records: Sequence[Any], port: MemberPort,
                publishes: HandlerPublishes | None) -> int:
        spec, ctx = self.spec, self.context
        registry, group, report, now = ctx.registry, spec.group, ctx.report, ctx.now
        listening = ctx.listening()
        blocked: set[TopicPartition] = set(port.paused())
        in_place_all = self.in_place
        copies: list[_Copy] = []
        acted = 0
        settle, stopping = port.settle, port.stopping
        # The happy path without listeners or breakers: a record without provenance headers
        # is decoded, handled and settled here, by the same rules as process_record's
        # (anything else goes through process_record).
        fast = not listening and not spec.depends_on
        decode, handler, wanted = registry.decode, spec.handler, spec.event_type
        verdict: Verdict
        for record in records:
            # a plain (topic, partition) tuple finds TopicPartition keys (equal, same hash)
            key = (record.topic, record.partition)
            if blocked and key in blocked:
                continue
            if stopping():
                break
            if publishes is not None:
                publishes.take()  # a previous record's publishes that did not settle: dropped
            in_place = in_place_all.get(key) if in_place_all else None  # type: ignore[call-overload]
            delivery = delivery_of(record.headers, group, record.topic) if fast else None
            if (delivery is not None and in_place is None and delivery.for_group
                    and delivery.not_before is None and delivery.error is None):
                try:
                    event = decode(record.value)
                except EnvelopeError:
                    event = None
                if event is not None:
                    if wanted is not None and event.event_type != wanted:
                        acted += 1
                        settle(record)  # SKIP: another event type
                        continue
                    try:
                        returned = handler(event)
                    except Exception as exc:  # classified by the error classifier
                        verdict = outcome_verdict(spec, event, delivery.attempt, delivery.origin,
                                                  None, exc, now)
                    else:
                        if returned is None or returned is OK:
                            acted += 1
                            if publishes is not None:
                                self._write_published(publishes)
                            settle(record)
                            continue
                        verdict = outcome_verdict(spec, event, delivery.attempt,
                                                  delivery.origin, returned, None, now)
                else:
                    verdict = process_record(spec, registry, record, now=now, group=group)
            else:
                override = (in_place[1] if in_place is not None and in_place[0] == record.offset
                            else None)
                on_delivery = None
                if listening:
                    def on_delivery(event: Event | None, attempt: int, _r: Any = record) -> None:
                        report(ActivityKind.DELIVERED, spec=spec, record=_r, event=event,
                               attempt=attempt)
                verdict = process_record(spec, registry, record, now=now, group=group,
                                         attempt_override=override, on_delivery=on_delivery)
            kind = verdict.kind
            if kind is VerdictKind.DECIDED:
                acted += 1
                decision = verdict.decision
                assert decision is not None
                action = decision.action
                if action is Action.SETTLE:
                    if in_place is not None:
                        del in_place_all[tp_of(record)]
                    if publishes is not None:
                        self._write_published(publishes)
                    settle(record)
                    if listening:
                        report(ActivityKind.SETTLED, spec=spec, record=record,
                               event=verdict.event, attempt=decision.attempt)
                    continue
                tp = tp_of(record)
                if action is Action.SEEK_BACK:
                    self._seek_back(port, record, tp, verdict.event, decision)
                    blocked.add(tp)
                else:
                    copy = self._send_copy(record, tp, verdict.event, decision)
                    if copy is None:
                        self.wait(port, tp, now() + REPRODUCE_FAILURE_WAIT_S)
                        blocked.add(tp)
                    else:
                        copies.append(copy)
            elif kind is VerdictKind.SKIP:
                acted += 1
                settle(record)
                if listening:
                    report(ActivityKind.SKIPPED, spec=spec, record=record, event=verdict.event,
                           detail=verdict.detail)
            elif kind is VerdictKind.WAIT:
                assert verdict.not_before is not None
                tp = tp_of(record)
                self.wait(port, tp, verdict.not_before)
                blocked.add(tp)
                report(ActivityKind.WAITING, spec=spec, record=record, attempt=verdict.attempt,
                       detail=verdict.detail)
            else:  # HOLD: a breaker is open
                self.hold(port, verdict.detail)
                blocked.update(port.assignment())
        if copies:
            self._acknowledge(port, copies)
        return acted

    def _seek_back(self, port: MemberPort, record: Any, tp: TopicPartition,
                   event: Event | None, decision: Decision) -> None:
        self.in_place[tp] = (record.offset, decision.attempt)
        if decision.not_before is not None and decision.delay_s > 0:
            self.wait(port, tp, decision.not_before)
        else:
            port.seek(tp, record.offset)
        self.context.report(ActivityKind.SEEK_BACK, spec=self.spec, record=record, event=event,
                            attempt=decision.attempt,
                            detail=f"{decision.reason}; wait {decision.delay_s:.3f}s")

    def wait(self, port: MemberPort, tp: TopicPartition, due: float) -> None:
        """Pause ``tp`` until ``due``; its first unsettled record is delivered again after."""
        self.waiting[tp] = due
        if tp not in port.paused():
            port.pause((tp,))

    def _partition_for(self, topic: str, partition: int) -> int | None:
        parts = self._partitions.get(topic)
        if not parts:
            parts = self.context.copies.partitions(topic)
            self._partitions[topic] = parts
        return partition if partition in parts else None

    def _send_copy(self, record: Any, tp: TopicPartition, event: Event | None,
                   decision: Decision) -> _Copy | None:
        assert decision.target_topic is not None
        ctx = self.context
        headers = failure_headers(
            record.headers or (), source=SourceRecord.of(record), group=self.spec.group,
            attempt=decision.attempt, reason=decision.reason, error=decision.error,
            not_before=decision.not_before if decision.action is Action.REPRODUCE else None,
            include_stacktrace=ctx.include_stacktrace,
        )
        try:
            partition = self._partition_for(decision.target_topic, record.partition)
            handle = ctx.copies.send_copy(decision.target_topic, record.value, record.key,
                                          headers, partition)
        except PublishError as exc:
            self._copy_failed(record, event, decision, exc)
            return None
        return _Copy(record, tp, event, decision, handle)

    def _acknowledge(self, port: MemberPort, copies: list[_Copy]) -> None:
        results = self.context.copies.wait_all(
            [(c.decision.target_topic or "", c.handle) for c in copies])
        failed: set[TopicPartition] = set()
        report = self.context.report
        for copy, result in zip(copies, results, strict=True):
            if isinstance(result, Receipt) and copy.tp not in failed:
                self.in_place.pop(copy.tp, None)
                port.settle(copy.record)
                kind = (ActivityKind.REPRODUCED if copy.decision.action is Action.REPRODUCE
                        else ActivityKind.DEAD_LETTERED)
                report(kind, spec=self.spec, record=copy.record, event=copy.event,
                       attempt=copy.decision.attempt, target_topic=result.topic,
                       detail=copy.decision.reason)
                continue
            if isinstance(result, PublishError):
                self._copy_failed(copy.record, copy.event, copy.decision, result)
            if copy.tp not in failed:
                failed.add(copy.tp)
                self.wait(port, copy.tp, self.context.now() + REPRODUCE_FAILURE_WAIT_S)

    def _copy_failed(self, record: Any, event: Event | None, decision: Decision,
                     exc: PublishError) -> None:
        self.context.report(ActivityKind.PUBLISH_FAILED, spec=self.spec, record=record,
                            event=event, attempt=decision.attempt,
                            target_topic=decision.target_topic,
                            detail=f"{exc}; not committed, redelivered after "
                                   f"{REPRODUCE_FAILURE_WAIT_S:g}s")

    # -- breakers and due times ------------------------------------------------------------

    def hold(self, port: MemberPort, why: str) -> None:
        """Pause every assigned partition while a breaker is open (reported once)."""
        todo = [tp for tp in port.assignment() if tp not in port.paused()]
        if todo:
            port.pause(todo)
        if not self.breaker_paused:
            self.breaker_paused = True
            self.context.report(ActivityKind.PAUSED, spec=self.spec, detail=why)

    def sync_breakers(self, port: MemberPort, why: str | None = None) -> None:
        """Hold while a breaker the subscription depends on is open; resume (all paused
        partitions not waiting for a due time) once none is."""
        depends_on = self.spec.depends_on
        open_ = [b.name for b in depends_on if b.state is BreakerState.OPEN]
        if open_:
            self.hold(port, why or f"breaker open: {', '.join(open_)}")
        elif self.breaker_paused:
            self.breaker_paused = False
            port.resume([tp for tp in port.paused() if tp not in self.waiting])
            self.context.report(ActivityKind.RESUMED, spec=self.spec, detail=why or (
                "no breaker open: " + ", ".join(f"{b.name} {b.state.value}" for b in depends_on)))

    def tick(self, port: MemberPort) -> None:
        """After every poll: tick the breakers, hold or resume, resume due partitions."""
        if self.spec.depends_on:
            for breaker in self.spec.depends_on:
                breaker.tick()
            self.sync_breakers(port)
        if self.waiting:
            self.resume_due(port)

    def resume_due(self, port: MemberPort, only: TopicPartition | None = None) -> None:
        """Resume the waiting partitions whose due time has come (``only``: just that one)."""
        now = self.context.now()
        for tp, due in list(self.waiting.items()):
            if due <= now and (only is None or tp == only):
                del self.waiting[tp]
                if not self.breaker_paused:
                    port.resume((tp,))
                self.context.report(ActivityKind.RESUMED, spec=self.spec, topic=tp.topic,
                                    partition=tp.partition, detail="due time reached")

    # -- rebalances ----------------------------------------------------------------------

    def forget(self, tps: Iterable[TopicPartition]) -> list[TopicPartition]:
        """Forget the member state of partitions taken away; return those that were
        waiting (their pause must be lifted if no breaker holds them)."""
        forgotten = []
        for tp in tps:
            if self.waiting.pop(tp, None) is not None:
                forgotten.append(tp)
            self.in_place.pop(tp, None)
        return forgotten
