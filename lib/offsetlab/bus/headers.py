"""Provenance headers on retried and dead-lettered records.

Where they overlap with Spring Kafka's ``DeadLetterPublishingRecoverer`` (``KafkaHeaders``)
the names and encodings are Spring's, so Spring tooling (and people who know it) can read
our dead letters:

==================================== ===============================================
header                               value
==================================== ===============================================
``kafka_dlt-original-topic``         UTF-8
``kafka_dlt-original-partition``     4-byte big-endian signed int
``kafka_dlt-original-offset``        8-byte big-endian signed long
``kafka_dlt-original-timestamp``     8-byte big-endian signed long (epoch ms)
``kafka_dlt-original-timestamp-type`` UTF-8 (``CreateTime`` / ``LogAppendTime``)
``kafka_dlt-original-consumer-group`` UTF-8
``kafka_dlt-exception-fqcn``         UTF-8 (``module.QualName`` of the exception)
``kafka_dlt-exception-cause-fqcn``   UTF-8 (of ``__cause__``, when there is one)
``kafka_dlt-exception-message``      UTF-8
``kafka_dlt-exception-stacktrace``   UTF-8 (only when asked for)
``offsetlab-attempt``                4-byte big-endian int: the delivery number this copy
                                     will be (retries) or was (dead letters); absent = 1
``offsetlab-not-before``             8-byte big-endian long, epoch ms: do not process
                                     before (like Spring's retry-topic backoff timestamp)
``offsetlab-reason``                 UTF-8: why (``retry: ...``, ``rejected: ...``,
                                     ``fatal: ...``, ``retries exhausted ...``)
==================================== ===============================================

Rules (Spring's defaults where it has one): the record's own headers are kept; the
``original-*`` headers are written once, when a record first fails, and kept on later
copies, so they always name where the record was first consumed (a retry-topic copy knows
its original topic); exception, attempt, not-before and reason headers are *replaced* on
each copy, never stacked, so records do not grow with each retry.
"""

from __future__ import annotations

import struct
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from offsetlab.bus.errors import MalformedHeaders

__all__ = [
    "Header",
    "Headers",
    "SourceRecord",
    "Provenance",
    "failure_headers",
    "parse_provenance",
    "attempt_of",
    "not_before_of",
    "original_topic_of",
    "is_copy_for",
    "Delivery",
    "delivery_of",
    "ORIGINAL_TOPIC",
    "ORIGINAL_PARTITION",
    "ORIGINAL_OFFSET",
    "ORIGINAL_TIMESTAMP",
    "ORIGINAL_TIMESTAMP_TYPE",
    "ORIGINAL_CONSUMER_GROUP",
    "EXCEPTION_FQCN",
    "EXCEPTION_CAUSE_FQCN",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_STACKTRACE",
    "ATTEMPT",
    "NOT_BEFORE",
    "REASON",
]

ORIGINAL_TOPIC = "kafka_dlt-original-topic"
ORIGINAL_PARTITION = "kafka_dlt-original-partition"
ORIGINAL_OFFSET = "kafka_dlt-original-offset"
ORIGINAL_TIMESTAMP = "kafka_dlt-original-timestamp"
ORIGINAL_TIMESTAMP_TYPE = "kafka_dlt-original-timestamp-type"
ORIGINAL_CONSUMER_GROUP = "kafka_dlt-original-consumer-group"
EXCEPTION_FQCN = "kafka_dlt-exception-fqcn"
EXCEPTION_CAUSE_FQCN = "kafka_dlt-exception-cause-fqcn"
EXCEPTION_MESSAGE = "kafka_dlt-exception-message"
EXCEPTION_STACKTRACE = "kafka_dlt-exception-stacktrace"
ATTEMPT = "offsetlab-attempt"
NOT_BEFORE = "offsetlab-not-before"
REASON = "offsetlab-reason"

_ORIGINAL = (
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    ORIGINAL_TIMESTAMP,
    ORIGINAL_TIMESTAMP_TYPE,
    ORIGINAL_CONSUMER_GROUP,
)
_REPLACED = (
    EXCEPTION_FQCN,
    EXCEPTION_CAUSE_FQCN,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    ATTEMPT,
    NOT_BEFORE,
    REASON,
)
_MAX_STACKTRACE = 8000

Header = tuple[str, bytes]
Headers = tuple[Header, ...]

_TIMESTAMP_TYPES = {0: "CreateTime", 1: "LogAppendTime"}
_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")


@dataclass(frozen=True, kw_only=True)
class SourceRecord:
    """Where the failing record was consumed from (a ConsumerRecord has all of these)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None
    timestamp_type: str | None = None

    @classmethod
    def of(cls, record: Any) -> SourceRecord:
        """From a kafka-python ``ConsumerRecord`` (``timestamp``, int ``timestamp_type``:
        0 CreateTime, 1 LogAppendTime) or anything with ``timestamp_ms``/str
        ``timestamp_type`` (the in-memory bus's records)."""
        ts = getattr(record, "timestamp_ms", None)
        if ts is None:
            ts = getattr(record, "timestamp", None)
        kind = getattr(record, "timestamp_type", None)
        if isinstance(kind, int) and not isinstance(kind, bool):
            kind = _TIMESTAMP_TYPES.get(kind)
        return cls(topic=record.topic, partition=record.partition, offset=record.offset,
                   timestamp_ms=ts if isinstance(ts, int) and ts >= 0 else None,
                   timestamp_type=kind if isinstance(kind, str) else None)


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Everything the provenance headers say, decoded; ``None`` where absent."""

    original_topic: str | None = None
    original_partition: int | None = None
    original_offset: int | None = None
    original_timestamp_ms: int | None = None
    original_timestamp_type: str | None = None
    original_consumer_group: str | None = None
    exception_fqcn: str | None = None
    exception_cause_fqcn: str | None = None
    exception_message: str | None = None
    exception_stacktrace: str | None = None
    attempt: int = 1
    not_before_ms: int | None = None
    reason: str | None = None


def _fqcn(exc: BaseException) -> str:
    cls = type(exc)
    return f"{cls.__module__}.{cls.__qualname__}"


def _last(headers: Iterable[tuple[str, bytes | None]], name: str) -> bytes | None:
    found = None
    for key, value in headers:
        if key == name:
            found = value
    return found


def _decode_int(name: str, raw: bytes, codec: struct.Struct) -> int:
    if len(raw) != codec.size:
        raise MalformedHeaders(
            f"header {name!r} must be {codec.size} bytes big-endian, got {len(raw)} bytes "
            f"{raw[:16]!r}"
        )
    return int(codec.unpack(raw)[0])


def _decode_text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedHeaders(f"header {name!r} is not UTF-8: {raw[:32]!r}") from exc


def parse_provenance(headers: Iterable[tuple[str, bytes | None]]) -> Provenance:
    """Decode the provenance headers (the last value of each name wins)."""
    hs = [(k, v) for k, v in headers if v is not None]
    values: dict[str, object] = {}
    texts = {
        ORIGINAL_TOPIC: "original_topic",
        ORIGINAL_TIMESTAMP_TYPE: "original_timestamp_type",
        ORIGINAL_CONSUMER_GROUP: "original_consumer_group",
        EXCEPTION_FQCN: "exception_fqcn",
        EXCEPTION_CAUSE_FQCN: "exception_cause_fqcn",
        EXCEPTION_MESSAGE: "exception_message",
        EXCEPTION_STACKTRACE: "exception_stacktrace",
        REASON: "reason",
    }
    numbers = {
        ORIGINAL_PARTITION: ("original_partition", _INT),
        ORIGINAL_OFFSET: ("original_offset", _LONG),
        ORIGINAL_TIMESTAMP: ("original_timestamp_ms", _LONG),
        ATTEMPT: ("attempt", _INT),
        NOT_BEFORE: ("not_before_ms", _LONG),
    }
    for name, attr in texts.items():
        raw = _last(hs, name)
        if raw is not None:
            values[attr] = _decode_text(name, raw)
    for name, (attr, codec) in numbers.items():
        raw = _last(hs, name)
        if raw is not None:
            values[attr] = _decode_int(name, raw, codec)
    attempt = values.get("attempt", 1)
    if not isinstance(attempt, int) or attempt < 1:
        raise MalformedHeaders(f"header {ATTEMPT!r} must be >= 1, got {attempt!r}")
    return Provenance(**values)  # type: ignore[arg-type]


def attempt_of(headers: Iterable[tuple[str, bytes | None]]) -> int:
    """The delivery number a consumed record is (1 when it carries no attempt header)."""
    raw = _last(headers, ATTEMPT)
    if raw is None:
        return 1
    value = _decode_int(ATTEMPT, raw, _INT)
    if value < 1:
        raise MalformedHeaders(f"header {ATTEMPT!r} must be >= 1, got {value}")
    return value


def not_before_of(headers: Iterable[tuple[str, bytes | None]]) -> float | None:
    """The record's not-before time in epoch seconds, or ``None``."""
    raw = _last(headers, NOT_BEFORE)
    return None if raw is None else _decode_int(NOT_BEFORE, raw, _LONG) / 1000.0


def original_topic_of(headers: Iterable[tuple[str, bytes | None]], default: str) -> str:
    """The topic the record was first consumed from, or ``default`` if it never failed."""
    raw = _last(headers, ORIGINAL_TOPIC)
    return default if raw is None else _decode_text(ORIGINAL_TOPIC, raw)


def is_copy_for(headers: Iterable[tuple[str, bytes | None]], group: str) -> bool:
    """Whether consumer group ``group`` should process this record.

    A retry copy (re-produced to the main topic or a retry topic) belongs to the group that
    failed it: other groups reading the same topic already handled the original and must
    skip the copy (settle it without calling the handler). Records without provenance are
    for everyone. A tool that re-drives dead letters should strip the provenance headers.
    """
    raw = _last(headers, ORIGINAL_CONSUMER_GROUP)
    return raw is None or _decode_text(ORIGINAL_CONSUMER_GROUP, raw) == group


class Delivery(NamedTuple):
    """What a consumed record's headers say about delivering it to one consumer group."""

    for_group: bool
    """False: another group's retry copy (skip it, see :func:`is_copy_for`)."""
    not_before: float | None
    """Epoch seconds before which it must not be processed, or ``None``."""
    attempt: int
    """Its delivery number (1 without an attempt header)."""
    origin: str
    """The topic it was first consumed from (the record's own when it never failed)."""
    error: MalformedHeaders | None
    """The first malformed header met, in the order above; the fields after it keep their
    defaults (as when calling the four readers one by one and stopping at the error)."""


#: the headers :func:`delivery_of` reads
_DELIVERY = frozenset((ORIGINAL_CONSUMER_GROUP, NOT_BEFORE, ATTEMPT, ORIGINAL_TOPIC))


def delivery_of(headers: Iterable[tuple[str, bytes | None]] | None, group: str,
                topic: str) -> Delivery:
    """:func:`is_copy_for`, :func:`not_before_of`, :func:`attempt_of` and
    :func:`original_topic_of` (``default=topic``) in one call (``for_group`` False: the
    others are not read). One pass over the headers when none of the four is there (a
    record that never failed): 0.23 us instead of 0.6 us for the four calls here."""
    if headers:
        hs = headers if isinstance(headers, list | tuple) else list(headers)
        for key, _ in hs:
            if key in _DELIVERY:
                return _delivery_slow(hs, group, topic)
    clean = _CLEAN.get(topic)
    if clean is None:
        if len(_CLEAN) >= 1024:
            _CLEAN.clear()
        clean = _CLEAN[topic] = Delivery(True, None, 1, topic, None)
    return clean


#: topic -> the (immutable) Delivery of a record without provenance headers
_CLEAN: dict[str, Delivery] = {}


def _delivery_slow(headers: Sequence[tuple[str, bytes | None]], group: str,
                   topic: str) -> Delivery:
    not_before: float | None = None
    attempt = 1
    try:
        if not is_copy_for(headers, group):
            return Delivery(False, None, 1, topic, None)
        not_before = not_before_of(headers)
        attempt = attempt_of(headers)
        return Delivery(True, not_before, attempt, original_topic_of(headers, topic), None)
    except MalformedHeaders as exc:
        return Delivery(True, not_before, attempt, topic, exc)


def failure_headers(
    headers: Sequence[tuple[str, bytes | None]],
    *,
    source: SourceRecord,
    group: str | None,
    attempt: int,
    reason: str,
    error: BaseException | None = None,
    not_before: float | None = None,
    include_stacktrace: bool = False,
) -> Headers:
    """The headers of a retry or dead-letter copy of a record that failed.

    ``headers`` are the failed record's own; ``source`` is where it was consumed;
    ``attempt`` is the delivery number of the copy (retry) or of the failed delivery (dead
    letter); ``not_before`` is epoch seconds or ``None``.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    kept = [(k, v) for k, v in headers if k not in _REPLACED and v is not None]
    already = {k for k, _ in kept}
    out: list[Header] = list(kept)
    if ORIGINAL_TOPIC not in already:
        out = [(k, v) for k, v in out if k not in _ORIGINAL]
        out.append((ORIGINAL_TOPIC, source.topic.encode()))
        out.append((ORIGINAL_PARTITION, _INT.pack(source.partition)))
        out.append((ORIGINAL_OFFSET, _LONG.pack(source.offset)))
        if source.timestamp_ms is not None:
            out.append((ORIGINAL_TIMESTAMP, _LONG.pack(source.timestamp_ms)))
        if source.timestamp_type is not None:
            out.append((ORIGINAL_TIMESTAMP_TYPE, source.timestamp_type.encode()))
        if group is not None:
            out.append((ORIGINAL_CONSUMER_GROUP, group.encode()))
    if error is not None:
        out.append((EXCEPTION_FQCN, _fqcn(error).encode()))
        if error.__cause__ is not None:
            out.append((EXCEPTION_CAUSE_FQCN, _fqcn(error.__cause__).encode()))
        out.append((EXCEPTION_MESSAGE, str(error).encode()))
        if include_stacktrace:
            text = "".join(traceback.format_exception(error))[-_MAX_STACKTRACE:]
            out.append((EXCEPTION_STACKTRACE, text.encode()))
    out.append((ATTEMPT, _INT.pack(attempt)))
    if not_before is not None:
        out.append((NOT_BEFORE, _LONG.pack(round(not_before * 1000))))
    out.append((REASON, reason.encode()))
    return tuple(out)
