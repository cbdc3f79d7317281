"""Attaching a :class:`~offsetlab.lab.timeline_core.Timeline` to an experiment's clients.

- producers: :func:`recorded_send` / :class:`RecordingProducer` record ``produced`` when the
  broker acknowledges (partition and offset from the ``RecordMetadata``) and
  ``produce_failed`` when it does not;
- raw consumers: :func:`record_consumed` for each ``ConsumerRecord``, and
  :class:`TimelineRebalanceListener` for ``revoked`` / ``assigned`` / ``lost``;
- the adapter's consumer runner: :func:`runner_listener` maps its lifecycle events to rows
  (a group join becomes a ``join`` interval, pause/resume a ``pause`` interval).

Recording is cheap and never raises into the client that triggered it: callbacks run on
kafka-python's IO thread, where an exception would be logged and lost (producer) or propagate
into ``poll()`` (rebalance listener).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kafka import ConsumerRebalanceListener

from offsetlab.lab.timeline_core import Row, Timeline, jsonable

log = logging.getLogger(__name__)

__all__ = ["recorded_send", "RecordingProducer", "record_consumed", "TimelineRebalanceListener",
           "runner_listener"]

#: lifecycle kinds that become the start / end row of a ``pause`` interval
_INTERVAL_EVENTS = {"pause": ("pause", "start"), "resume": ("pause", "end")}


# -- producers ---------------------------------------------------------------------------
def recorded_send(producer: Any, timeline: Timeline, who: str, topic: str, value: Any = None,
                  key: Any = None, *, detail: Mapping[str, Any] | None = None,
                  record_send: bool = False, **send_kwargs: Any) -> Any:
    """``producer.send(topic, value, key, ...)`` that records the outcome on ``timeline``.

    When the broker acknowledges: a ``produced`` row (topic, partition, offset from the
    ``RecordMetadata``; the time is the acknowledgement's, on the producer's IO thread). When
    it fails (also when ``send`` itself raises, which is re-raised): a ``produce_failed`` row
    with the error. ``record_send`` also records a ``send``
    row at the call. Returns the send future unchanged, so ``.get(timeout=...)`` still works.
    """
    if record_send:
        timeline.record(who, "send", topic=topic, key=key, detail=detail)

    def on_ack(md: Any) -> None:
        try:
            timeline.record(who, "produced", topic=md.topic, partition=md.partition,
                            offset=md.offset, key=key, detail=detail)
        except Exception:  # never into kafka-python's IO thread
            log.exception("timeline: could not record an acknowledgement")

    def on_error(exc: BaseException) -> None:
        try:
            timeline.record(who, "produce_failed", topic=topic, key=key,
                            detail={**(detail or {}), "error": jsonable(exc)})
        except Exception:
            log.exception("timeline: could not record a failed send")

    try:
        future = producer.send(topic, value=value, key=key, **send_kwargs)
    except Exception as exc:  # raised at the call (metadata wait timed out, record too large)
        timeline.record(who, "produce_failed", topic=topic, key=key,
                        detail={**(detail or {}), "error": jsonable(exc), "raised_by": "send"})
        raise
    future.add_callback(on_ack)
    future.add_errback(on_error)
    return future


class RecordingProducer:
    """A kafka-python producer whose ``send`` records on a timeline (see
    :func:`recorded_send`); everything else is the wrapped producer's."""

    def __init__(self, producer: Any, timeline: Timeline, who: str = "producer") -> None:
        self.producer = producer
        self.timeline = timeline
        self.who = who

    def send(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> Any:
        return recorded_send(self.producer, self.timeline, self.who, topic, value, key, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)


# -- consumers ---------------------------------------------------------------------------
def record_consumed(timeline: Timeline, who: str, record: Any, *, what: str = "consumed",
                    detail: Mapping[str, Any] | None = None) -> Row:
    """Record a raw kafka-python ``ConsumerRecord`` (topic, partition, offset, key) now."""
    return timeline.record(who, what, topic=record.topic, partition=record.partition,
                           offset=record.offset, key=record.key, detail=detail)


def _partitions_fields(partitions: Iterable[Any]) -> dict[str, Any]:
    """``topic`` and ``detail`` for a set of TopicPartitions: one topic -> its name and the
    sorted partition numbers; several -> no topic and sorted ``"topic:p"`` strings."""
    tps = list(partitions or ())
    topics = {tp.topic for tp in tps}
    if len(topics) == 1:
        return {"topic": next(iter(topics)),
                "detail": {"partitions": sorted(tp.partition for tp in tps)}}
    return {"topic": None, "detail": {"partitions": sorted(f"{tp.topic}:{tp.partition}" for tp in tps)}}


class TimelineRebalanceListener(ConsumerRebalanceListener):
    """Records ``revoked`` / ``assigned`` / ``lost`` rows for a raw consumer, then calls
    ``inner`` (your own listener) if given.

    ``consumer.subscribe([topic], listener=TimelineRebalanceListener(tl, "consumer-1"))``.
    Runs on kafka-python's IO thread (see ConsumerRebalanceListener's threading notes):
    recording only appends a row.
    """

    def __init__(self, timeline: Timeline, who: str,
                 inner: ConsumerRebalanceListener | None = None) -> None:
        self.timeline = timeline
        self.who = who
        self.inner = inner

    def _record(self, what: str, partitions: Iterable[Any]) -> None:
        try:
            self.timeline.record(self.who, what, **_partitions_fields(partitions))
        except Exception:
            log.exception("timeline: could not record %s", what)

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._record("revoked", revoked)
        if self.inner is not None:
            self.inner.on_partitions_revoked(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._record("assigned", assigned)
        if self.inner is not None:
            self.inner.on_partitions_assigned(assigned)

    def on_partitions_lost(self, lost: Any) -> None:
        self._record("lost", lost)
        if self.inner is not None:
            self.inner.on_partitions_lost(lost)


# -- the adapter's consumer runner -------------------------------------------------------
def runner_listener(timeline: Timeline, who: str | None = None) -> Callable[[Any], None]:
    """A listener for the consumer runner's lifecycle events (``offsetlab.bus.lifecycle``).

    Each event is a frozen dataclass with ``kind``, ``at`` (``time.monotonic()``) and
    ``runner``; every other field goes into the row's ``detail`` (read generically, so new
    fields appear without a change here). The lane is ``who`` or the event's ``runner``.
    Special cases: ``group_join`` with a ``duration_s`` becomes a ``join`` interval ending at
    ``at``; ``pause``/``resume`` become the start/end rows of a ``pause`` interval; a
    ``rebalance`` becomes a row named by its phase (``assigned``/``revoked``/``lost``, as the
    raw consumer's :class:`TimelineRebalanceListener` writes them); a ``crash`` keeps its
    error as ``"ClassName: message"`` in ``detail['error']``. When an event's partitions are
    all of one topic, ``topic`` is set and partitions are listed as numbers.
    """

    def listener(event: Any) -> None:
        try:
            _record_lifecycle(timeline, who, event)
        except Exception:  # a listener must not break the runner
            log.exception("timeline: could not record lifecycle event %r", event)

    return listener


def _record_lifecycle(timeline: Timeline, who: str | None, event: Any) -> None:
    if dataclasses.is_dataclass(event) and not isinstance(event, type):
        fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    else:
        fields = dict(vars(event))
    kind = str(jsonable(fields.pop("kind", type(event).__name__.lower())))
    at = fields.pop("at", None)
    runner = fields.pop("runner", None)
    lane = who or (str(jsonable(runner)) if runner is not None else "runner")
    topic = _single_topic(fields)
    detail = {name: _partitions_value(value, topic) for name, value in fields.items()}
    if kind == "group_join":
        duration = fields.get("duration_s")
        if isinstance(duration, int | float) and at is not None:
            timeline.record(lane, "join", phase="start", at=at - float(duration), topic=topic)
            timeline.record(lane, "join", phase="end", at=at, topic=topic, detail=detail)
            return
        timeline.record(lane, "join", at=at, topic=topic, detail=detail)
        return
    if kind in _INTERVAL_EVENTS:
        what, phase = _INTERVAL_EVENTS[kind]
        timeline.record(lane, what, phase=phase, at=at, topic=topic, detail=detail)
        return
    if kind == "rebalance" and isinstance(fields.get("phase"), str):
        # the same names as TimelineRebalanceListener's rows: assigned / revoked / lost
        detail.pop("phase")
        timeline.record(lane, fields["phase"], at=at, topic=topic, detail=detail)
        return
    timeline.record(lane, kind, at=at, topic=topic, detail=detail or None)


def _is_tp(value: Any) -> bool:
    return type(value).__name__ == "TopicPartition" and hasattr(value, "partition")


def _partitions_value(value: Any, topic: str | None) -> Any:
    """A collection of TopicPartitions as :class:`TimelineRebalanceListener` writes them
    (sorted partition numbers when the event names one topic); anything else via
    :func:`jsonable`."""
    if (topic is not None and isinstance(value, list | tuple | set | frozenset) and value
            and all(_is_tp(v) for v in value)):
        return sorted(v.partition for v in value)
    return jsonable(value)


def _single_topic(fields: Mapping[str, Any]) -> str | None:
    """The one topic named by the event's TopicPartitions (assignment, partitions, offsets)."""
    topics: set[str] = set()
    for value in fields.values():
        items = value.keys() if isinstance(value, Mapping) else value
        if isinstance(items, str | bytes) or not isinstance(items, Iterable):
            continue
        for item in items:
            if _is_tp(item):
                topics.add(item.topic)
    return next(iter(topics)) if len(topics) == 1 else None
