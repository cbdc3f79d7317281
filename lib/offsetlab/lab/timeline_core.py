"""The timeline itself: rows recorded from any thread on one monotonic clock, saved and
loaded, read as a pandas frame (see :mod:`offsetlab.lab.timeline` for the row format).

:class:`Timeline` records :class:`Row` s (``record``, ``span``, ``interval``), gives them as a
DataFrame (:meth:`Timeline.to_frame`), writes them (:meth:`Timeline.save`: CSV and lossless
JSON) and reads them back (:meth:`Timeline.load`); :func:`jsonable` makes a row's ``detail``
JSON-friendly; :func:`deliveries` counts per message how often it was produced and consumed.
Recording needs the standard library only; pandas is imported when a frame is made.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported lazily: recording needs only the standard library
    import pandas as pd

__all__ = ["COLUMNS", "Row", "Timeline", "jsonable", "deliveries"]

#: the columns of :meth:`Timeline.to_frame` and of the saved CSV, in order
COLUMNS = ("seq", "t", "who", "what", "phase", "topic", "partition", "offset", "key", "detail")


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
