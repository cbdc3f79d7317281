"""The outage's adapter pipeline: ``KafkaBus`` with one retry strategy (``MainTopicRetry``
for E05, ``RetryTopicRetry`` for E06), whose subscriptions' consumers know their topics'
partitions before they join (:func:`warmed_factory`, given as the bus config's consumer
factory). With a ``breaker`` the subscription ``depends_on`` it and the handler's dependency
calls go through it (``CircuitBreaker.call``): the adapter's way to wait for a dependency
(its alive check is the probe the caller gives it).
"""

from __future__ import annotations

from typing import Any

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.events import Event
from offsetlab.bus.transports.kafka_python.compat import warmed_consumer
from offsetlab.lab.experiments.outage_scenario import (
    DeadLetterFn,
    OutageWork,
    ProcessFn,
    WorkItem,
)
from offsetlab.lab.raw import create_topic, unique
from offsetlab.lab.timeline import Timeline

__all__ = ["BUS_CONSUMER_SETTINGS", "warmed_factory", "BusPipeline"]

#: consumer settings of the bus subscriptions here: a short session so that a broker whose
#: first group join waits on the session timeout (Tansu waits about half of it) joins in
#: seconds; heartbeats well inside it
BUS_CONSUMER_SETTINGS: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1500}


def warmed_factory() -> Any:
    """The consumer factory of the bus subscriptions here: consumers that know their topics'
    partitions before they join, and refresh the coordinator's metadata snapshot
    (:func:`offsetlab.bus.transports.kafka_python.compat.warmed_consumer`; without it a
    subscription sometimes sat without partitions on kafka-python 3.0.12, in E01 and E03)."""
    return warmed_consumer(snapshot=True)


class BusPipeline:
    """``KafkaBus`` with one retry strategy; the handler is the run's
    (:meth:`~offsetlab.lab.experiments.outage_run.OutageRun.handler_for`)."""

    def __init__(self, broker: BrokerHandle, name: str, retry: Any, *, partitions: int = 1,
                 consumer_settings: dict[str, Any] | None = None, breaker: Any = None) -> None:
        from offsetlab.bus import EventRegistry

        self.name = name
        self.broker = broker
        self.retry = retry
        self.registry = EventRegistry([OutageWork], topic_prefix=unique(name) + ".")
        # the main topic is made here (its partitions); the bus makes its retry and
        # dead-letter topics at start, with the main topic's partition count
        self.main_topic = create_topic(broker, self.registry.topic_for(OutageWork), partitions)
        self.dead_letter_topic = f"{self.main_topic}{retry.dead_letter_suffix}"
        self.consumer_settings = consumer_settings or {}
        #: a ``CircuitBreaker`` the subscription ``depends_on`` (None: none): the handler's
        #: dependency calls go through it, its alive check is the caller's probe
        self.breaker = breaker
        #: set by :func:`run_outage`: where membership and pauses are recorded
        self.timeline: Timeline | None = None
        self._bus: Any = None
        self._sub: Any = None

    def encode(self, item: WorkItem) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        encoded = self.registry.encode(OutageWork(seq=item.seq, work_key=item.key,
                                                  needs_dependency=item.needs_dependency))
        return encoded.key or b"", encoded.value, list(encoded.headers)

    def decode_dead_letter(self, value: bytes) -> int:
        event = self.registry.decode(value)
        assert isinstance(event, OutageWork)
        return event.seq

    def handled_topics(self) -> list[str]:
        return list(self._sub.spec.topics) if self._sub is not None else [self.main_topic]

    def start(self, process: ProcessFn, on_dead_letter: DeadLetterFn) -> None:
        from offsetlab.bus import ActivityKind, KafkaBus, KafkaBusConfig

        attempts: dict[str, int] = {}  # event_id -> handler calls so far
        seqs: dict[str, int] = {}

        def handler(event: Event) -> None:
            assert isinstance(event, OutageWork)
            guarded = breaker is not None and event.needs_dependency
            if guarded:
                breaker.guard()  # fails fast while open: not a call of the handler
            attempts[event.event_id] = attempts.get(event.event_id, 0) + 1
            seqs[event.event_id] = event.seq
            if guarded:
                breaker.call(process, event.item(), attempts[event.event_id])
            else:
                process(event.item(), attempts[event.event_id])

        timeline = self.timeline
        breaker = self.breaker

        def on_activity(activity: Any) -> None:
            if activity.kind is ActivityKind.DEAD_LETTERED and activity.event_id in seqs:
                on_dead_letter(seqs[activity.event_id])
            if timeline is None:
                return
            # membership (lane "<name>-group") and not-before waits, one lane per paused
            # topic ("<name> waits on main|retry topic"), on the run's timeline
            lane = f"{self.name}-group"
            if activity.kind is ActivityKind.JOINED:
                timeline.record(lane, "join", detail=activity.detail)
            elif activity.kind is ActivityKind.REBALANCED:
                timeline.record(lane, activity.detail.split(" ", 1)[0], detail=activity.detail)
            elif activity.kind in (ActivityKind.WAITING, ActivityKind.RESUMED) and activity.topic:
                which = "main" if activity.topic == self.main_topic else "retry"
                timeline.record(f"{self.name} waits on {which} topic", "pause",
                                phase="start" if activity.kind is ActivityKind.WAITING else "end",
                                topic=activity.topic, partition=activity.partition)

        config = KafkaBusConfig(
            bootstrap_servers=self.broker.bootstrap_servers, name=self.name,
            client_settings=dict(self.broker.client_config), consumer_factory=warmed_factory(),
            consumer_settings={**BUS_CONSUMER_SETTINGS, **self.consumer_settings})
        self._bus = KafkaBus(self.registry, config)
        self._bus.add_listener(on_activity)
        self._sub = self._bus.subscribe(OutageWork, handler, group=unique(self.name),
                                        retry=self.retry, name=self.name,
                                        depends_on=() if breaker is None else (breaker,))
        self._sub.run(timeout=30)

    def stop(self) -> None:
        if self._bus is not None:
            self._bus.close()
