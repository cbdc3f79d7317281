"""E07 with the adapter: the consumer runner + circuit breaker wired by hand, and a Kafka
bus subscription that ``depends_on`` the breaker (the bus does the wiring)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from kafka import KafkaConsumer

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.breaker import BreakerState, BreakerTransition, CircuitBreaker
from offsetlab.bus.config import RunnerConfig
from offsetlab.bus.errors import DependencyUnavailable
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.interface import Activity, ActivityKind
from offsetlab.bus.retry import Backoff, InPlaceRetry
from offsetlab.bus.runner import BatchContext, ConsumerRunner
from offsetlab.lab.experiments.e07_core import (
    JOIN_POLL_MS,
    OutageDependency,
    PauseParams,
    ScenarioResult,
    key_of,
    new_result,
    read_back,
    retrying,
    run_story,
)
from offsetlab.lab.raw import unique
from offsetlab.lab.timeline import Timeline, record_consumed, runner_listener

__all__ = ["run_runner_breaker", "run_bus_depends_on", "WorkItem"]


@retrying
def run_runner_breaker(broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
    """The adapter: ConsumerRunner + CircuitBreaker (open -> pause, half-open -> resume)."""
    result = new_result("runner-breaker", broker, params)
    tl = result.timeline
    dependency = OutageDependency(tl)
    breaker = CircuitBreaker("dependency", failure_threshold=params.failure_threshold,
                             success_threshold=1, probe_interval_s=params.probe_interval_s,
                             alive_check=dependency.available)
    config = RunnerConfig(bootstrap_servers=broker.bootstrap_servers, group_id=result.group,
                          topics=(result.topic,), name="worker", poll_timeout_ms=100,
                          join_poll_timeout_ms=JOIN_POLL_MS,
                          consumer_settings=params.group_settings())

    def worker_batch(records: list[Any], ctx: BatchContext) -> None:
        for r in records:
            if ctx.skipped(r):
                continue
            record_consumed(tl, "worker", r)
            try:
                breaker.call(dependency.call, key_of(r))
            except (ConnectionError, DependencyUnavailable) as exc:
                tl.record("worker", "call_failed", partition=r.partition, offset=r.offset,
                          key=r.key, detail={"error": type(exc).__name__})
                return  # unsettled: the runner seeks back to it (and the rest of the batch)
            record_consumed(tl, "worker", r, what="processed")
            ctx.settle(r)

    def factory(**kwargs: Any) -> KafkaConsumer:
        consumer = KafkaConsumer(**kwargs)
        consumer.partitions_for_topic(result.topic)  # metadata known before the join
        return consumer

    worker = ConsumerRunner(config, batch_handler=worker_batch, consumer_factory=factory,
                            listeners=[runner_listener(tl, "worker")],
                            on_tick=lambda ctx: breaker.tick())

    def on_breaker(t: BreakerTransition) -> None:
        tl.record("breaker", t.state.value, detail={"reason": t.reason})
        if t.state is BreakerState.OPEN:
            worker.pause(worker.assignment())
        elif t.state is BreakerState.HALF_OPEN:
            worker.resume(worker.paused())

    breaker.add_listener(on_breaker)

    def peer_handler(r: Any) -> None:
        record_consumed(tl, "peer", r)
        record_consumed(tl, "peer", r, what="processed")

    peer = ConsumerRunner(RunnerConfig(bootstrap_servers=broker.bootstrap_servers,
                                       group_id=result.group, topics=(result.topic,), name="peer",
                                       join_poll_timeout_ms=JOIN_POLL_MS,
                                       consumer_settings=params.group_settings()),
                          handler=peer_handler, listeners=[runner_listener(tl, "peer")],
                          consumer_factory=factory)
    try:
        worker.start()
        peer.start()
        run_story(broker, result, dependency,
               lambda: [sorted(tp.partition for tp in r.assignment()) for r in (worker, peer)])
    finally:
        for r in (worker, peer):
            try:
                r.stop(timeout=params.timeout_s)
            except Exception as exc:  # noqa: BLE001 - reported, the other still stops
                result.errors[r.name] = f"{type(exc).__name__}: {exc}"
    for r in (worker, peer):
        if r.last_error is not None:
            result.errors.setdefault(r.name, f"{type(r.last_error).__name__}: {r.last_error}")
    read_back(broker, result)
    return result


@dataclass(frozen=True, kw_only=True)
class WorkItem(Event):
    """The bus scenario's message: one item of work for the worker's dependency."""

    topic: ClassVar[str] = "e07.work"
    item: str

    @property
    def key(self) -> str:
        return self.item


def _bus_activity(tl: Timeline) -> Callable[[Activity], None]:
    """KafkaBus activities -> E07's rows: delivered = consumed, settled = processed, a seek
    back after a failed call = call_failed."""

    def listener(a: Activity) -> None:
        who = a.subscription or "producer"
        where = {"topic": a.topic, "partition": a.partition, "offset": a.offset, "key": a.key}
        if a.kind is ActivityKind.PUBLISHED:
            tl.record("producer", "produced", at=_mono(a.at), **where)
        elif a.kind is ActivityKind.DELIVERED:
            tl.record(who, "consumed", at=_mono(a.at), detail={"attempt": a.attempt}, **where)
        elif a.kind is ActivityKind.SETTLED:
            tl.record(who, "processed", at=_mono(a.at), **where)
        elif a.kind is ActivityKind.SEEK_BACK:
            tl.record(who, "call_failed", at=_mono(a.at), detail={"attempt": a.attempt}, **where)
        # pauses come from the runner's lifecycle events (runner_listener), not from here

    return listener


def _mono(epoch: float) -> float:
    """An epoch time (the Kafka bus stamps activities with ``time.time()``) on the
    monotonic clock of the timeline."""
    return time.monotonic() - (time.time() - epoch)


@retrying
def run_bus_depends_on(broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
    """The adapter's event bus: a KafkaBus subscription that ``depends_on`` the breaker.

    The worker's handler calls the dependency through the breaker; a failed call is retried
    in place (``InPlaceRetry``: seek back, short backoff); ``failure_threshold`` failures
    open the breaker and the bus pauses the subscription's partitions (and keeps polling)
    until the alive check half-opens it. The peer is a second subscription of the same group
    on the same bus, with no dependency.
    """
    from offsetlab.bus.kafka_bus import KafkaBus, KafkaBusConfig

    registry = EventRegistry([WorkItem], topic_prefix=unique("e07-bus") + ".")
    result = ScenarioResult(strategy="bus-depends-on", params=params, timeline=Timeline(),
                            topic=registry.topic_for(WorkItem),
                            group=unique("e07-bus-group"), produced=params.messages)
    tl = result.timeline
    dependency = OutageDependency(tl)
    breaker = CircuitBreaker("dependency", failure_threshold=params.failure_threshold,
                             success_threshold=1, probe_interval_s=params.probe_interval_s,
                             alive_check=dependency.available)
    breaker.add_listener(lambda t: tl.record("breaker", t.state.value, detail={"reason": t.reason}))
    settings = {k: v for k, v in params.group_settings().items() if k != "enable_auto_commit"}
    bus = KafkaBus(registry, KafkaBusConfig(bootstrap_servers=broker.bootstrap_servers,
                                            consumer_settings=settings,
                                            default_partitions=params.partitions))
    bus.add_listener(_bus_activity(tl))
    retry = InPlaceRetry(max_retries=params.failure_threshold + 5,
                         backoff=Backoff(initial_s=0.1, multiplier=1.0, max_s=0.1))
    try:
        worker = bus.subscribe(WorkItem, lambda e: breaker.call(dependency.call, e.item),
                               group=result.group, name="worker", retry=retry,
                               depends_on=(breaker,))
        peer = bus.subscribe(WorkItem, lambda e: None, group=result.group, name="peer")
        subs = (worker, peer)
        for sub in subs:
            sub.start()
            runner = sub.runner  # type: ignore[attr-defined]
            runner.add_listener(runner_listener(tl, sub.spec.name))

        def holds() -> list[list[int]]:
            return [sorted(tp.partition for tp in s.runner.assignment())  # type: ignore[attr-defined]
                    for s in subs]

        def produce() -> None:
            for i in range(params.messages):
                bus.publish(WorkItem(item=f"key-{i}"))

        lanes = {s.runner.name: s.spec.name for s in subs}  # type: ignore[attr-defined]
        run_story(broker, result, dependency, holds, produce, lanes)
    finally:
        try:
            bus.close()
        except Exception as exc:  # noqa: BLE001 - reported
            result.errors["bus"] = f"{type(exc).__name__}: {exc}"
    read_back(broker, result)
    return result
