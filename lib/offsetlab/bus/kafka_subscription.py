"""A subscription on the Kafka bus: a :class:`~offsetlab.bus.runner.ConsumerRunner` whose
batch handler is the :class:`~offsetlab.bus.core.SubscriptionCore`.

The core carries out the per-record rule book (:func:`~offsetlab.bus.interface.process_record`)
through the runner's :class:`~offsetlab.bus.batch.BatchContext` (settle, seek, pause,
resume) and the bus's reproduce producer; see :mod:`offsetlab.bus.core` for the rules. At
the end of a batch every retry copy and dead letter is acknowledged together; then the
runner commits ``offset + 1`` of the highest contiguous settled record per partition and
seeks back to the first unsettled one: no commit ever gets ahead of an unacknowledged copy,
so nothing is lost (at-least-once), and the happy path costs one commit per batch.

In the transactional mode (``KafkaBusConfig.transactional_id``) the runner runs every batch
in one transaction of the subscription's transactional producer: the copies, dead letters and
handler publishes of the batch and its offsets are committed together (exactly-once inside
Kafka for ``read_committed`` readers); an aborted batch is delivered again whole.

After every poll the core ticks the breakers the subscription depends on (pausing every
assigned partition while one is open; half-open lets the next delivery be the trial call)
and resumes partitions whose due time (a backoff, a not-before time) has come.

Like a Kafka consumer (and the in-memory bus), a member forgets in-place retry counts and
waits of partitions it loses at a rebalance; partitions paused for an open breaker are
re-paused when a rebalance hands them back (the runner remembers pause requests).

The subscription gets what it needs from its bus explicitly (a
:class:`~offsetlab.bus.core.SubscriptionContext`, the topic-creating callable, the join
timeout and the consumer factory), never through the bus's private members.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from offsetlab.bus.batch import BatchContext
from offsetlab.bus.breaker import BreakerTransition
from offsetlab.bus.config import RunnerConfig
from offsetlab.bus.core import REPRODUCE_FAILURE_WAIT_S, SubscriptionContext, SubscriptionCore
from offsetlab.bus.errors import BusStateError
from offsetlab.bus.interface import (
    ActivityKind,
    Subscription,
    SubscriptionSpec,
    SubscriptionState,
)
from offsetlab.bus.lifecycle import Crash, GroupJoin, LifecycleEvent, Rebalance, Stop
from offsetlab.bus.runner import ConsumerRunner, JoinHandle
from offsetlab.bus.types import Record, TopicPartition

__all__ = ["KafkaSubscription", "REPRODUCE_FAILURE_WAIT_S"]


class KafkaSubscription(Subscription):
    """A handler consuming its topics in a consumer group on a real broker."""

    def __init__(self, spec: SubscriptionSpec, runner_config: RunnerConfig, *,
                 context: SubscriptionContext,
                 ensure_topics: Callable[[SubscriptionSpec], None],
                 join_timeout_s: float,
                 consumer_factory: Callable[..., Any] | None = None) -> None:
        self.spec = spec
        self.runner_config = runner_config
        self.core = SubscriptionCore(spec, context)
        self._report = context.report
        self._ensure_topics = ensure_topics
        self._join_timeout_s = join_timeout_s
        self._consumer_factory = consumer_factory
        self._state = SubscriptionState.CREATED
        self._runner: ConsumerRunner | None = None
        self._removers: list[Callable[[], None]] = []

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
            self._ensure_topics(self.spec)
            txn = self.core.context.transaction
            if txn is not None:  # take over the id (fence a dead predecessor) before joining
                txn.prepare()
            self._runner = ConsumerRunner(
                self.runner_config, batch_handler=self._on_batch, on_tick=self.core.tick,
                listeners=(self._on_lifecycle,), consumer_factory=self._consumer_factory,
                transaction=self.core.context.transaction,
            )
            for breaker in self.spec.depends_on:
                self._removers.append(breaker.add_listener(self._on_breaker))
            self._state = SubscriptionState.RUNNING
        return self._runner.start()

    def run(self, timeout: float | None = None) -> GroupJoin:
        """Start if needed; return once the group join completed (``JoinFailed``/``JoinTimeout``)."""
        self.start()
        assert self._runner is not None
        budget = timeout if timeout is not None else self._join_timeout_s
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
        txn = self.core.context.transaction  # the runner thread has ended: nobody uses it
        if txn is not None:
            txn.close(timeout if timeout is not None else 10.0)

    def _forget_breakers(self) -> None:
        for remove in self._removers:
            remove()
        self._removers.clear()

    def waiting(self) -> dict[TopicPartition, float]:
        """Partitions paused until a due time (backoff or not-before), with that time."""
        return dict(self.core.waiting)

    # -- runner thread -------------------------------------------------------------------

    def _on_batch(self, records: list[Record], ctx: BatchContext) -> None:
        self.core.handle(records, ctx)

    def _on_breaker(self, transition: BreakerTransition) -> None:
        # Any thread; the runner thread acts on the state at its next tick.
        self._report(ActivityKind.BREAKER, spec=self.spec,
                     detail=f"{transition.breaker}: {transition.previous.value} -> "
                            f"{transition.state.value} ({transition.reason})")

    def _on_lifecycle(self, event: LifecycleEvent) -> None:
        report, spec = self._report, self.spec
        if isinstance(event, GroupJoin):
            report(ActivityKind.JOINED, spec=spec, detail="assigned " + ", ".join(
                f"{tp.topic}[{tp.partition}]" for tp in event.assignment))
        elif isinstance(event, Rebalance):
            tps = tuple(event.partitions)
            if event.phase in ("revoked", "lost"):
                forgotten = self.core.forget(tps)
                if forgotten and not self.core.breaker_paused and self._runner is not None:
                    self._runner.resume(forgotten)  # applied at once: we are on its thread
            report(ActivityKind.REBALANCED, spec=spec, detail=f"{event.phase} " + ", ".join(
                f"{tp.topic}[{tp.partition}]" for tp in tps))
        elif isinstance(event, Stop):
            report(ActivityKind.LEFT, spec=spec, detail="stopped")
        elif isinstance(event, Crash):
            report(ActivityKind.LEFT, spec=spec,
                   detail=f"crashed ({type(event.error).__name__}: {event.error}); "
                          f"restart={event.restart}")
