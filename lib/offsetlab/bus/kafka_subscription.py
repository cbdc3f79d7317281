"""A subscription on the Kafka bus: a :class:`~offsetlab.bus.runner.ConsumerRunner` whose
batch handler carries out :func:`~offsetlab.bus.interface.process_record` verdicts.

Per record of a poll batch, in order (the rule book is ``process_record``'s):

- **skip** (another group's retry copy, another event type): settled;
- **wait** (a not-before time in the future): the partition is paused until it is due and
  the record left unsettled, so the runner seeks back to it; ``on_tick`` resumes the
  partition when the time has come (the consumer keeps polling meanwhile);
- **hold** (a breaker it depends on is open): every assigned partition is paused, the
  record left unsettled; ``on_tick`` resumes them when no breaker is open any more
  (half-open lets the next delivery be the trial call);
- **settle**: settled;
- **seek back** (in-place retry): the attempt count is kept per partition and offset (in
  place retries write no header), the partition is paused for the backoff (or sought back
  at once without one);
- **reproduce / dead letter**: the copy is *sent* (not waited for) with the provenance
  headers, to the same partition number when the target has it; later records of the
  partition go on.

At the end of the batch every copy is waited for together; a record whose copy was
acknowledged is settled, one whose copy failed stays unsettled (its partition pauses for
:data:`REPRODUCE_FAILURE_WAIT_S` and the record is delivered again). Then the runner
commits ``offset + 1`` of the highest contiguous settled record per partition and seeks
back to the first unsettled one: no commit ever gets ahead of an unacknowledged copy, so
nothing is lost (at-least-once), and the happy path costs one commit per batch.

Like a Kafka consumer (and the in-memory bus), a member forgets in-place retry counts and
waits of partitions it loses at a rebalance; partitions paused for an open breaker are
re-paused when a rebalance hands them back (the runner remembers pause requests).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kafka.consumer.fetcher import ConsumerRecord
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import TopicPartition

from offsetlab.bus.breaker import BreakerState, BreakerTransition
from offsetlab.bus.config import RunnerConfig
from offsetlab.bus.errors import BusStateError, PublishError
from offsetlab.bus.events import Event
from offsetlab.bus.headers import SourceRecord, failure_headers
from offsetlab.bus.interface import (
    ActivityKind,
    Receipt,
    Subscription,
    SubscriptionSpec,
    SubscriptionState,
    VerdictKind,
    process_record,
)
from offsetlab.bus.lifecycle import Crash, GroupJoin, LifecycleEvent, Rebalance, Stop
from offsetlab.bus.retry import Action, Decision
from offsetlab.bus.runner import BatchContext, ConsumerRunner, JoinHandle

if TYPE_CHECKING:
    from offsetlab.bus.kafka_bus import KafkaBus

__all__ = ["KafkaSubscription", "REPRODUCE_FAILURE_WAIT_S"]

_log = logging.getLogger(__name__)

#: Seconds a partition waits after a retry copy or dead letter was not acknowledged.
REPRODUCE_FAILURE_WAIT_S = 1.0


@dataclass
class _Copy:
    """A retry copy or dead letter sent in this batch, not yet acknowledged."""

    record: ConsumerRecord
    tp: TopicPartition
    event: Event | None
    decision: Decision
    future: FutureRecordMetadata


class KafkaSubscription(Subscription):
    """A handler consuming its topics in a consumer group on a real broker."""

    def __init__(self, bus: KafkaBus, spec: SubscriptionSpec, runner_config: RunnerConfig,
                 consumer_factory: Callable[..., Any] | None = None) -> None:
        self._bus = bus
        self.spec = spec
        self.runner_config = runner_config
        self._consumer_factory = consumer_factory
        self._state = SubscriptionState.CREATED
        self._runner: ConsumerRunner | None = None
        self._removers: list[Callable[[], None]] = []
        # runner-thread-only state
        self._in_place: dict[TopicPartition, tuple[int, int]] = {}  # tp -> (offset, attempt)
        self._waiting: dict[TopicPartition, float] = {}  # tp -> due (epoch seconds)
        self._breaker_paused = False
        self._partitions: dict[str, frozenset[int]] = {}

    def __repr__(self) -> str:
        return f"KafkaSubscription({self.spec.name!r}, {self._state.value})"

    @property
    def state(self) -> SubscriptionState:
        return self._state

    @property
    def runner(self) -> ConsumerRunner | None:
        """The consumer runner (``None`` before ``start``): lifecycle events, assignment."""
        return self._runner

    # -- start / run / stop --------------------------------------------------------------

    def start(self) -> JoinHandle:
        """Create missing topics, start the runner; return its join handle at once."""
        if self._state is SubscriptionState.STOPPED:
            raise BusStateError(
                f"subscription {self.spec.name!r} was stopped; call bus.subscribe() again"
            )
        if self._runner is None:
            self._bus._ensure_topics(self.spec)
            kwargs: dict[str, Any] = {}
            if self._consumer_factory is not None:
                kwargs["consumer_factory"] = self._consumer_factory
            self._runner = ConsumerRunner(
                self.runner_config, batch_handler=self._on_batch, on_tick=self._on_tick,
                listeners=(self._on_lifecycle,), **kwargs,
            )
            for breaker in self.spec.depends_on:
                self._removers.append(breaker.add_listener(self._on_breaker))
            self._state = SubscriptionState.RUNNING
        return self._runner.start()

    def run(self, timeout: float | None = None) -> GroupJoin:
        """Start if needed; return once the group join completed (``JoinFailed``/``JoinTimeout``)."""
        self.start()
        assert self._runner is not None
        budget = timeout if timeout is not None else self._bus.config.join_timeout_s
        try:
            return self._runner.run(timeout=budget)
        except Exception:
            self._state = SubscriptionState.STOPPED
            self._forget_breakers()
            raise

    def stop(self, timeout: float | None = None) -> None:
        """Commit what is settled, leave the group, stop the runner (idempotent)."""
        self._state = SubscriptionState.STOPPED
        self._forget_breakers()
        if self._runner is not None:
            self._runner.stop(timeout if timeout is not None else 30.0)

    def _forget_breakers(self) -> None:
        for remove in self._removers:
            remove()
        self._removers.clear()

    def waiting(self) -> dict[TopicPartition, float]:
        """Partitions paused until a due time (backoff or not-before), with that time."""
        return dict(self._waiting)

    # -- the batch handler (runner thread) -----------------------------------------------

    def _on_batch(self, records: list[ConsumerRecord], ctx: BatchContext) -> None:
        spec, bus = self.spec, self._bus
        registry, group, report = bus.registry, spec.group, bus._report
        listening = bus.listening
        blocked: set[TopicPartition] = set(ctx.paused())
        copies: list[_Copy] = []
        now = time.time
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if tp in blocked:
                continue
            if ctx.stopping():
                break
            in_place = self._in_place.get(tp)
            override = in_place[1] if in_place is not None and in_place[0] == record.offset else None
            on_delivery = None
            if listening:
                def on_delivery(event: Event | None, attempt: int, _r: ConsumerRecord = record) -> None:
                    report(ActivityKind.DELIVERED, sub=self, record=_r, event=event,
                           attempt=attempt)
            verdict = process_record(spec, registry, record, now=now, group=group,
                                     attempt_override=override, on_delivery=on_delivery)
            kind = verdict.kind
            if kind is VerdictKind.DECIDED:
                decision = verdict.decision
                assert decision is not None
                action = decision.action
                if action is Action.SETTLE:
                    if in_place is not None:
                        del self._in_place[tp]
                    ctx.settle(record)
                    if listening:
                        report(ActivityKind.SETTLED, sub=self, record=record,
                               event=verdict.event, attempt=decision.attempt)
                elif action is Action.SEEK_BACK:
                    self._seek_back(ctx, record, tp, verdict.event, decision)
                    blocked.add(tp)
                else:
                    copy = self._send_copy(record, tp, verdict.event, decision)
                    if copy is None:
                        self._wait(ctx, tp, now() + REPRODUCE_FAILURE_WAIT_S)
                        blocked.add(tp)
                    else:
                        copies.append(copy)
            elif kind is VerdictKind.SKIP:
                ctx.settle(record)
                if listening:
                    report(ActivityKind.SKIPPED, sub=self, record=record, event=verdict.event,
                           detail=verdict.detail)
            elif kind is VerdictKind.WAIT:
                assert verdict.not_before is not None
                self._wait(ctx, tp, verdict.not_before)
                blocked.add(tp)
                report(ActivityKind.WAITING, sub=self, record=record, attempt=verdict.attempt,
                       detail=verdict.detail)
            else:  # HOLD: a breaker is open
                self._breaker_pause(ctx, verdict.detail)
                blocked.update(ctx.assignment())
        if copies:
            self._acknowledge(ctx, copies)

    def _seek_back(self, ctx: BatchContext, record: ConsumerRecord, tp: TopicPartition,
                   event: Event | None, decision: Decision) -> None:
        self._in_place[tp] = (record.offset, decision.attempt)
        if decision.not_before is not None and decision.delay_s > 0:
            self._wait(ctx, tp, decision.not_before)
        else:
            ctx.seek(tp, record.offset)
        self._bus._report(ActivityKind.SEEK_BACK, sub=self, record=record, event=event,
                          attempt=decision.attempt,
                          detail=f"{decision.reason}; wait {decision.delay_s:.3f}s")

    def _wait(self, ctx: BatchContext, tp: TopicPartition, due: float) -> None:
        """Pause ``tp`` until ``due``; the runner seeks back to its first unsettled record."""
        self._waiting[tp] = due
        if tp not in ctx.paused():
            ctx.pause((tp,))

    def _partition_for(self, topic: str, partition: int) -> int | None:
        parts = self._partitions.get(topic)
        if not parts:
            parts = self._bus._producers.partitions(topic)
            self._partitions[topic] = parts
        return partition if partition in parts else None

    def _send_copy(self, record: ConsumerRecord, tp: TopicPartition, event: Event | None,
                   decision: Decision) -> _Copy | None:
        assert decision.target_topic is not None
        bus = self._bus
        headers = failure_headers(
            record.headers or (), source=SourceRecord.of(record), group=self.spec.group,
            attempt=decision.attempt, reason=decision.reason, error=decision.error,
            not_before=decision.not_before if decision.action is Action.REPRODUCE else None,
            include_stacktrace=bus.config.include_stacktrace,
        )
        try:
            partition = self._partition_for(decision.target_topic, record.partition)
            future = bus._producers.send_copy(decision.target_topic, record.value, record.key,
                                              headers, partition)
        except PublishError as exc:
            self._copy_failed(record, event, decision, exc)
            return None
        return _Copy(record, tp, event, decision, future)

    def _acknowledge(self, ctx: BatchContext, copies: list[_Copy]) -> None:
        results = self._bus._producers.wait_all(
            [(c.decision.target_topic or "", c.future) for c in copies])
        failed: set[TopicPartition] = set()
        for copy, result in zip(copies, results, strict=True):
            if isinstance(result, Receipt) and copy.tp not in failed:
                self._in_place.pop(copy.tp, None)
                ctx.settle(copy.record)
                kind = (ActivityKind.REPRODUCED if copy.decision.action is Action.REPRODUCE
                        else ActivityKind.DEAD_LETTERED)
                self._bus._report(kind, sub=self, record=copy.record, event=copy.event,
                                  attempt=copy.decision.attempt, target_topic=result.topic,
                                  detail=copy.decision.reason)
                continue
            if isinstance(result, PublishError):
                self._copy_failed(copy.record, copy.event, copy.decision, result)
            if copy.tp not in failed:
                failed.add(copy.tp)
                self._wait(ctx, copy.tp, time.time() + REPRODUCE_FAILURE_WAIT_S)

    def _copy_failed(self, record: ConsumerRecord, event: Event | None, decision: Decision,
                     exc: PublishError) -> None:
        _log.warning("subscription %s: %s", self.spec.name, exc)
        self._bus._report(ActivityKind.PUBLISH_FAILED, sub=self, record=record, event=event,
                          attempt=decision.attempt, target_topic=decision.target_topic,
                          detail=f"{exc}; not committed, redelivered after "
                                 f"{REPRODUCE_FAILURE_WAIT_S:g}s")

    # -- breakers and due times (runner thread, after every poll) ------------------------

    def _breaker_pause(self, ctx: BatchContext, why: str) -> None:
        todo = [tp for tp in ctx.assignment() if tp not in ctx.paused()]
        if todo:
            ctx.pause(todo)
        if not self._breaker_paused:
            self._breaker_paused = True
            self._bus._report(ActivityKind.PAUSED, sub=self, detail=why)

    def _on_tick(self, ctx: BatchContext) -> None:
        depends_on = self.spec.depends_on
        if depends_on:
            for breaker in depends_on:
                breaker.tick()
            open_ = [b.name for b in depends_on if b.state is BreakerState.OPEN]
            if open_:
                self._breaker_pause(ctx, f"breaker open: {', '.join(open_)}")
            elif self._breaker_paused:
                self._breaker_paused = False
                ctx.resume([tp for tp in ctx.paused() if tp not in self._waiting])
                self._bus._report(ActivityKind.RESUMED, sub=self,
                                  detail="no breaker open: " + ", ".join(
                                      f"{b.name} {b.state.value}" for b in depends_on))
        if self._waiting:
            now = time.time()
            for tp, due in list(self._waiting.items()):
                if due <= now:
                    del self._waiting[tp]
                    if not self._breaker_paused:
                        ctx.resume((tp,))
                    self._bus._report(ActivityKind.RESUMED, sub=self, topic=tp.topic,
                                      partition=tp.partition, detail="due time reached")

    def _on_breaker(self, transition: BreakerTransition) -> None:
        # Any thread; the runner thread acts on the state at its next tick.
        self._bus._report(ActivityKind.BREAKER, sub=self,
                          detail=f"{transition.breaker}: {transition.previous.value} -> "
                                 f"{transition.state.value} ({transition.reason})")

    # -- lifecycle (runner thread) ---------------------------------------------------------

    def _on_lifecycle(self, event: LifecycleEvent) -> None:
        bus = self._bus
        if isinstance(event, GroupJoin):
            bus._report(ActivityKind.JOINED, sub=self, detail="assigned " + ", ".join(
                f"{tp.topic}[{tp.partition}]" for tp in event.assignment))
        elif isinstance(event, Rebalance):
            tps = tuple(event.partitions)
            if event.phase in ("revoked", "lost"):
                forgotten = [tp for tp in tps if self._waiting.pop(tp, None) is not None]
                for tp in tps:
                    self._in_place.pop(tp, None)
                if forgotten and not self._breaker_paused and self._runner is not None:
                    self._runner.resume(forgotten)  # applied at once: we are on its thread
            bus._report(ActivityKind.REBALANCED, sub=self, detail=f"{event.phase} " + ", ".join(
                f"{tp.topic}[{tp.partition}]" for tp in tps))
        elif isinstance(event, Stop):
            bus._report(ActivityKind.LEFT, sub=self, detail="stopped")
        elif isinstance(event, Crash):
            bus._report(ActivityKind.LEFT, sub=self,
                        detail=f"crashed ({type(event.error).__name__}: {event.error}); "
                               f"restart={event.restart}")
