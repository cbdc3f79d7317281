"""A thread-safe recorder of what every client did, on one clock: the experiments' raw data.

A :class:`Timeline` holds rows ``(seq, t, who, what, phase, topic, partition, offset, key,
detail)``:

- ``t`` is seconds since the timeline was created, on ``time.monotonic()`` (the clock the
  runner's lifecycle events and :mod:`offsetlab.lab.raw` use too, so times from any of them
  can be placed on it with ``at=``);
- ``who`` is the lane (a client: ``producer``, ``consumer-1``, ``runner-a``);
- ``what`` is what happened (``produced``, ``consumed``, ``assigned``, ``join``, ``pause``,
  ``crash``, ...); ``phase`` is ``"start"``/``"end"`` for the two rows of an interval
  (:meth:`Timeline.span`, :meth:`Timeline.interval`) and ``""`` for an instant;
- ``detail`` is a JSON-friendly dict (or a string) for everything else.

Attach it to the clients of an experiment:

- producers: :func:`recorded_send` / :class:`RecordingProducer` record ``produced`` when the
  broker acknowledges (partition and offset from the ``RecordMetadata``) and
  ``produce_failed`` when it does not;
- raw consumers: :func:`record_consumed` for each ``ConsumerRecord``, and
  :class:`TimelineRebalanceListener` for ``revoked`` / ``assigned`` / ``lost``;
- the adapter's consumer runner: :func:`runner_listener` maps its lifecycle events to rows
  (a group join becomes a ``join`` interval, pause/resume a ``pause`` interval).

:meth:`Timeline.to_frame` gives a pandas DataFrame sorted by time, :meth:`Timeline.save` writes
``<name>.csv`` (for people and pandas) and ``<name>.json`` (lossless, read back by
:meth:`Timeline.load`), :func:`deliveries` counts per message how often it was produced and
consumed (and by whom), and :func:`offsetlab.lab.plots.plot_timeline` draws it.

Recording is cheap and never raises into the client that triggered it: callbacks run on
kafka-python's IO thread, where an exception would be logged and lost (producer) or propagate
into ``poll()`` (rebalance listener).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka import ConsumerRebalanceListener

if TYPE_CHECKING:  # pandas is imported lazily: recording needs only the standard library
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "COLUMNS",
    "Row",
    "Timeline",
    "recorded_send",
    "RecordingProducer",
    "record_consumed",
    "TimelineRebalanceListener",
    "runner_listener",
    "deliveries",
    "jsonable",
]

#: the columns of :meth:`Timeline.to_frame` and of the saved CSV, in order
COLUMNS = ("seq", "t", "who", "what", "phase", "topic", "partition", "offset", "key", "detail")

#: lifecycle kinds that become the start / end row of a ``pause`` interval
_INTERVAL_EVENTS = {"pause": ("pause", "start"), "resume": ("pause", "end")}


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Row:
    """One thing that happened. ``t`` is seconds since the timeline's creation."""

    seq: int
    t: float
    who: str
    what: str
    phase: str = ""
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    detail: dict[str, Any] | str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in COLUMNS}


def _key_text(key: Any) -> str | None:
    if key is None:
        return None
    if isinstance(key, bytes | bytearray):
        return bytes(key).decode("utf-8", errors="replace")
    return str(key)


def jsonable(value: Any) -> Any:
    """``value`` made JSON-friendly for a row's ``detail``.

    TopicPartition -> ``"topic:partition"``; OffsetAndMetadata -> its offset; sets -> sorted
    lists; exceptions -> ``"ClassName: message"``; enums -> their value; dataclasses and
    namedtuples -> dicts; bytes -> text; anything else unknown -> ``str(value)``.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, BaseException):
        name, text = type(value).__name__, str(value)
        if not text or text == name or text.startswith(f"{name}: "):  # kafka errors name themselves
            return text or name
        return f"{name}: {text}"
    if type(value).__name__ == "TopicPartition" and hasattr(value, "partition"):
        return f"{value.topic}:{value.partition}"
    if type(value).__name__ == "OffsetAndMetadata" and hasattr(value, "offset"):
        return value.offset
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if isinstance(value, Mapping):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        items = [jsonable(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=str)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, type):
        return value.__name__
    return str(value)


class Timeline:
    """Rows recorded from any thread, on one monotonic clock starting at creation.

    >>> tl = Timeline()
    >>> tl.record("producer", "produced", topic="t", partition=0, offset=0, key="k")
    >>> with tl.span("consumer-1", "join"):
    ...     pass
    >>> tl.to_frame().what.tolist()
    ['produced', 'join', 'join']
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.t0: float = clock()
        #: wall-clock time of creation (UTC, ISO 8601), saved with the rows for reference
        self.started_at: str = datetime.now(UTC).isoformat(timespec="milliseconds")
        self._rows: list[Row] = []
        self._lock = threading.Lock()

    # -- recording ---------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the timeline's creation."""
        return self._clock() - self.t0

    def to_t(self, at: float) -> float:
        """A ``time.monotonic()`` value (e.g. a lifecycle event's ``at``) on this timeline."""
        return at - self.t0

    def record(self, who: str, what: str, *, topic: str | None = None,
               partition: int | None = None, offset: int | None = None, key: Any = None,
               detail: Mapping[str, Any] | str | None = None, at: float | None = None,
               phase: str = "") -> Row:
        """Add one row and return it. ``at`` is a ``time.monotonic()`` value (default: now);
        ``key`` may be bytes (decoded as UTF-8) or anything with a ``str()``."""
        if phase not in ("", "start", "end"):
            raise ValueError(f"phase must be '', 'start' or 'end', not {phase!r}")
        t = self.now() if at is None else self.to_t(at)
        if detail is not None and not isinstance(detail, str):
            detail = jsonable(dict(detail))
        with self._lock:
            row = Row(seq=len(self._rows), t=t, who=str(who), what=str(what), phase=phase,
                      topic=topic, partition=None if partition is None else int(partition),
                      offset=None if offset is None else int(offset), key=_key_text(key),
                      detail=detail)
            self._rows.append(row)
        return row

    @contextmanager
    def span(self, who: str, what: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Record the start and end rows of an interval around a block.

        Yields a dict: whatever the block puts in it is added to the end row's detail. If the
        block raises, the end row's detail has ``error`` (class name and message)."""
        start_detail = fields.pop("detail", None)
        self.record(who, what, phase="start", detail=start_detail, **fields)
        extra: dict[str, Any] = {}
        try:
            yield extra
        except BaseException as exc:
            extra["error"] = jsonable(exc)
            raise
        finally:
            self.record(who, what, phase="end", detail=extra or None, **fields)

    def interval(self, who: str, what: str, start: float, end: float, **fields: Any) -> None:
        """Record an interval that is already over; ``start``/``end`` are ``time.monotonic()``
        values (a join measured by somebody else, for instance)."""
        self.record(who, what, phase="start", at=start, **fields)
        self.record(who, what, phase="end", at=end, **fields)

    # -- reading -----------------------------------------------------------------------
    def rows(self) -> list[Row]:
        """A copy of the rows in recording order."""
        with self._lock:
            return list(self._rows)

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame sorted by ``t`` (recording order breaks ties).

        ``partition`` and ``offset`` are nullable integers (``Int64``); ``detail`` holds dicts
        or strings."""
        return _frame([row.as_dict() for row in self.rows()])

    # -- files -------------------------------------------------------------------------
    def save(self, directory: str | Path, name: str = "timeline") -> Path:
        """Write ``<directory>/<name>.csv`` (detail as JSON text) and ``<name>.json`` (rows
        and ``started_at``; what :meth:`load` reads). Returns the CSV path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        rows = [row.as_dict() for row in self.rows()]
        doc = {"format": "offsetlab.timeline/1", "started_at": self.started_at,
               "columns": list(COLUMNS), "rows": rows}
        (directory / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        frame = _frame(rows)
        frame["detail"] = frame["detail"].map(
            lambda d: "" if d is None else d if isinstance(d, str) else json.dumps(d, sort_keys=True))
        csv_path = directory / f"{name}.csv"
        frame.to_csv(csv_path, index=False)
        return csv_path

    @classmethod
    def load(cls, path: str | Path, name: str = "timeline") -> Timeline:
        """Read a timeline written by :meth:`save` (``path`` is its directory or its
        ``.json``/``.csv`` file). Times are kept as saved."""
        path = Path(path)
        if path.is_dir():
            path = path / f"{name}.json"
        elif path.suffix == ".csv":
            path = path.with_suffix(".json")
        doc = json.loads(path.read_text())
        if doc.get("format") != "offsetlab.timeline/1":
            raise ValueError(f"{path} is not a saved offsetlab timeline (format "
                             f"{doc.get('format')!r}); write it with Timeline.save()")
        tl = cls()
        tl.started_at = doc.get("started_at", tl.started_at)
        tl._rows = [Row(**{**{k: r.get(k) for k in COLUMNS}, "phase": r.get("phase") or ""})
                    for r in doc["rows"]]
        return tl


def _frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    rows = list(rows)
    # object columns keep None as None (pandas 3 would infer a string dtype with NaN)
    frame = pd.DataFrame({column: pd.Series([r.get(column) for r in rows], dtype=object)
                          for column in COLUMNS})
    for column in ("seq", "partition", "offset"):
        frame[column] = frame[column].astype("Int64")
    frame["t"] = frame["t"].astype(float)
    return frame.sort_values(["t", "seq"], kind="stable").reset_index(drop=True)


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


# -- reading a frame ---------------------------------------------------------------------
def deliveries(frame: pd.DataFrame, *, produced: str = "produced",
               consumed: str = "consumed") -> pd.DataFrame:
    """One row per message (topic, partition, offset) seen produced or consumed.

    Columns: ``topic``, ``partition``, ``offset``, ``key``, ``produced`` and ``consumed``
    (how many rows of each), ``consumers`` (sorted tuple of the lanes that consumed it).
    ``consumed == 1`` for every row is "every message consumed exactly once"; ``consumed > 1``
    are redeliveries; ``produced == 1 and consumed == 0`` are messages never consumed.
    """
    import pandas as pd

    rows = frame[frame.what.isin([produced, consumed]) & frame.offset.notna()]
    columns = ["topic", "partition", "offset", "key", "produced", "consumed", "consumers"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    keys = ["topic", "partition", "offset"]
    grouped = rows.groupby(keys, sort=True, dropna=False)
    out = grouped.agg(
        key=("key", "first"),
        produced=("what", lambda w: int((w == produced).sum())),
        consumed=("what", lambda w: int((w == consumed).sum())),
    ).reset_index()
    who = rows[rows.what == consumed].groupby(keys, dropna=False).who.agg(
        lambda w: tuple(sorted(set(map(str, w)))))
    out["consumers"] = [who.get(tuple(k), ()) for k in out[keys].itertuples(index=False)]
    return out[columns]
