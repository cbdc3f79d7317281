"""Events and their one wire format.

An event is a fields-only frozen dataclass under the :class:`Event` marker base (the
cosmicpython shape). A concrete event class says where it is published and under which key:

.. code-block:: python

    @dataclass(frozen=True, kw_only=True)
    class BackupRequestAccepted(Event):
        topic: ClassVar[str] = "backups.requests"
        request_id: str
        customer: str

        @property
        def key(self) -> str:
            return self.request_id

Its *payload* is its own fields. Every event also carries two metadata fields from the
base, ``event_id`` (a uuid4 string) and ``occurred_at`` (an aware UTC datetime), filled in
when the event is created and carried through the wire unchanged, so a decoded event equals
the one that was encoded.

The envelope (the only place the wire format is defined) is UTF-8 JSON::

    {"event_type": "BackupRequestAccepted", "event_id": "…uuid…",
     "occurred_at": "2026-11-27T06:45:18.123456+00:00", "schema_version": 1,
     "payload": {"request_id": "r-1", "customer": "acme"}}

:class:`EventRegistry` maps ``event_type`` names to classes; ``encode`` gives the topic,
key bytes, value bytes and headers to produce, ``decode`` turns value bytes back into an
event and raises :class:`~offsetlab.bus.errors.MalformedEnvelope` (not JSON, missing or
extra fields, wrong shapes, a schema version newer than the class) or
:class:`~offsetlab.bus.errors.UnknownEventType` (a type nobody registered).

Payload field values must be JSON values, or ``datetime`` (ISO 8601 on the wire) or tuples
(JSON arrays on the wire; frozen events should use tuples, not lists).

Cost (``offsetlab bench`` prints the parts): each event class's field list, headers and
type conversions are worked out once; the JSON is :mod:`offsetlab.bus.json_codec` (the
standard library's bytes, written and read by orjson when it is installed).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import typing
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from offsetlab.bus import json_codec
from offsetlab.bus.errors import ConfigError, MalformedEnvelope, UnknownEventType
from offsetlab.bus.event_values import event_builder as _event_builder
from offsetlab.bus.event_values import from_json_value as _from_json_value
from offsetlab.bus.event_values import may_convert as _may_convert
from offsetlab.bus.event_values import to_json_value as _to_json_value
from offsetlab.bus.event_values import utc_isoformat as _utc_isoformat
from offsetlab.bus.json_codec import INT_RANGE

_INT_MIN, _INT_MAX = INT_RANGE

__all__ = [
    "Event",
    "EncodedEvent",
    "EventRegistry",
    "ENVELOPE_FIELDS",
    "EVENT_TYPE_HEADER",
    "CONTENT_TYPE_HEADER",
    "CONTENT_TYPE",
]

#: The envelope's top-level keys, all required, no others allowed.
ENVELOPE_FIELDS = ("event_type", "event_id", "occurred_at", "schema_version", "payload")
#: Header naming the event type, so tools can route without decoding the value.
EVENT_TYPE_HEADER = "offsetlab-event-type"
CONTENT_TYPE_HEADER = "content-type"
CONTENT_TYPE = b"application/vnd.offsetlab.event+json"

_METADATA_FIELDS = ("event_id", "occurred_at")
_ENVELOPE_KEYS = frozenset(ENVELOPE_FIELDS)
#: the form ``str(uuid.UUID(...))`` gives; other spellings are normalized through uuid.UUID
_CANONICAL_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch


def _new_event_id() -> str:
    """A random (version 4) UUID string, as ``str(uuid.uuid4())`` is: the same 16 bytes of
    ``os.urandom`` with the same version and variant bits, formatted without a UUID object
    (1.0 us instead of 2.4 us here)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class Event:
    """Marker base of every domain event.

    Subclasses are ``@dataclass(frozen=True, kw_only=True)`` and set the class variable
    ``topic``; ``event_type`` defaults to the class name and ``schema_version`` to 1.
    Override the ``key`` property to give the message key (``None`` means no key: the
    producer spreads such records over partitions and per-key ordering is lost).
    """

    topic: ClassVar[str]
    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    event_id: str = field(default_factory=_new_event_id)
    occurred_at: datetime = field(default_factory=_utc_now)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" not in cls.__dict__:
            cls.event_type = cls.__name__

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise ValueError(
                f"{type(self).__name__}.occurred_at must be timezone-aware (UTC); "
                "pass datetime.now(UTC)"
            )

    @property
    def key(self) -> str | None:
        """The message key (partitioning and per-key order); ``None`` by default."""
        return None

    def payload(self) -> dict[str, Any]:
        """The event's own fields (metadata fields excluded), as Python values."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in _METADATA_FIELDS
        }


@dataclass(frozen=True)
class EncodedEvent:
    """What to produce for one event: topic, key bytes, value bytes, headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    event_type: str
    event_id: str


def _new_encoded(topic: str, key: bytes | None, value: bytes,
                 headers: tuple[tuple[str, bytes], ...], event_type: str,
                 event_id: str) -> EncodedEvent:
    """``EncodedEvent(...)`` without the frozen ``__init__``: 0.36 instead of 0.69 us."""
    encoded = _object_new(EncodedEvent)
    encoded.__dict__.update(topic=topic, key=key, value=value, headers=headers,
                            event_type=event_type, event_id=event_id)
    return encoded


_object_new = object.__new__
@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints`` once per event class (~300 µs a call: it was most of the
    cost of decoding a record)."""
    return typing.get_type_hints(cls)


# mypy#11470: mypy does not see a class object as Hashable (it is); the caches key on it
@functools.cache
def _payload_names(cls: type[Event]) -> tuple[str, ...] | None:
    """The fields :meth:`Event.payload` gives, or ``None`` when the class overrides it."""
    if cls.payload is not Event.payload:
        return None
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in _METADATA_FIELDS)


@functools.cache
def _type_headers(event_type: str) -> tuple[tuple[str, bytes], ...]:
    return ((EVENT_TYPE_HEADER, event_type.encode()), (CONTENT_TYPE_HEADER, CONTENT_TYPE))


@functools.cache
def _own_fields(cls: type[Event]) -> frozenset[str]:
    """The payload fields an envelope of ``cls`` may carry (its init fields, no metadata)."""
    return frozenset(f.name for f in dataclasses.fields(cls)
                     if f.init and f.name not in _METADATA_FIELDS)


@functools.cache
def _conversions(cls: type[Event]) -> tuple[tuple[str, Any], ...]:
    """``(field, annotation)`` of the payload fields whose JSON value may need turning back
    into the declared type (datetime, tuples); the rest are taken as they are."""
    hints = _type_hints(cls)  # type: ignore[arg-type]
    own = _own_fields(cls)  # type: ignore[arg-type]
    return tuple((name, hints[name]) for name in sorted(own)
                 if name in hints and _may_convert(hints[name]))


class _DecodePlan:
    """What decoding needs of one class: its payload fields, and (worked out at the first
    decode that gets that far, where a bad annotation has always raised) the conversions
    and how to build the event."""

    __slots__ = ("own", "conversions", "build")

    def __init__(self, own: frozenset[str]) -> None:
        self.own = own
        self.conversions: tuple[tuple[str, Any], ...] | None = None
        self.build: Callable[..., Any] | None = None


class EventRegistry:
    """Maps ``event_type`` names to event classes, and encodes/decodes the envelope."""

    def __init__(self, event_classes: Iterable[type[Event]] = (), *, topic_prefix: str = "") -> None:
        """``topic_prefix`` is put before every event class's ``topic`` on the wire (tests
        use a uuid prefix so runs on one broker never share topics)."""
        self._classes: dict[str, type[Event]] = {}
        self._decoding: dict[type[Event], _DecodePlan] = {}
        self._encoding: dict[type[Event], tuple[Any, ...]] = {}
        self.topic_prefix = topic_prefix
        for cls in event_classes:
            self.register(cls)

    def topic_for(self, cls: type[Event]) -> str:
        """The topic events of ``cls`` are published to (``topic_prefix`` + ``cls.topic``)."""
        return f"{self.topic_prefix}{getattr(cls, 'topic', '')}"

    def register(self, cls: type[Event]) -> type[Event]:
        """Register an event class (usable as a class decorator); returns it."""
        if not (isinstance(cls, type) and issubclass(cls, Event) and dataclasses.is_dataclass(cls)):
            raise ConfigError(
                f"register({cls!r}): not an Event dataclass; decorate it with "
                "@dataclass(frozen=True, kw_only=True) and subclass offsetlab.bus.Event"
            )
        topic = getattr(cls, "topic", None)
        if not isinstance(topic, str) or not topic:
            raise ConfigError(
                f"{cls.__name__}.topic is not set; declare `topic: ClassVar[str] = \"...\"`"
            )
        existing = self._classes.get(cls.event_type)
        if existing is not None and existing is not cls:
            raise ConfigError(
                f"event_type {cls.event_type!r} is registered twice ({existing.__qualname__} "
                f"and {cls.__qualname__}); set a distinct `event_type` class variable"
            )
        self._classes[cls.event_type] = cls
        return cls

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self._classes
        return isinstance(item, type) and self._classes.get(getattr(item, "event_type", "")) is item

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(sorted(self._classes))

    def classes_for_topic(self, topic: str) -> tuple[type[Event], ...]:
        """The registered classes published to (prefixed) ``topic``."""
        return tuple(c for c in self._classes.values() if self.topic_for(c) == topic)

    def class_for(self, event_type: str) -> type[Event]:
        try:
            return self._classes[event_type]
        except KeyError:
            raise UnknownEventType(
                f"event type {event_type!r} is not registered (known: "
                f"{', '.join(self.event_types) or 'none'}); register its class with the "
                "bus's EventRegistry"
            ) from None

    # -- encoding -----------------------------------------------------------------------

    def encode(self, event: Event) -> EncodedEvent:
        """The topic, key, value and headers to produce ``event`` with."""
        topic, value, key, headers = self.encode_record(event)
        return _new_encoded(topic, key, value, headers, type(event).event_type, event.event_id)

    def encode_record(self, event: Event) -> tuple[str, bytes, bytes | None,
                                                    tuple[tuple[str, bytes], ...]]:
        """:meth:`encode` as the tuple ``(topic, value, key, headers)`` a producer takes
        (what :meth:`KafkaBus.publish_many` sends: no :class:`EncodedEvent` per record)."""
        cls = type(event)
        plan = self._encoding.get(cls)
        if plan is None or plan[0] is not self.topic_prefix:
            plan = self._encode_plan(cls)
        _, topic, names, event_type, version, headers = plan
        payload: Any
        is_plain = type(event_type) is str
        if names is None:
            payload = _to_json_value(event.payload())
            is_plain = json_codec.plain(payload)
        else:
            payload = {}
            for name in names:
                v = getattr(event, name)
                t = type(v)
                if t is not str:
                    if t is int:
                        if is_plain:
                            is_plain = _INT_MIN <= v <= _INT_MAX
                    else:
                        v = _to_json_value(v)
                        if is_plain:
                            is_plain = json_codec.plain(v)
                payload[name] = v
        at = event.occurred_at
        if at.tzinfo is not UTC:
            at = at.astimezone(UTC)
        event_id = event.event_id
        value = None
        if is_plain and type(at) is datetime and type(event_id) is str:
            # orjson writes an aware UTC datetime as isoformat() does, 0.3 us cheaper than
            # formatting it here
            value = json_codec.dumps_plain({"event_type": event_type, "event_id": event_id,
                                            "occurred_at": at, "schema_version": version,
                                            "payload": payload})
        if value is None:
            value = self._dumps(cls, {"event_type": event_type, "event_id": event_id,
                                      "occurred_at": _utc_isoformat(at),
                                      "schema_version": version, "payload": payload},
                                is_plain and type(event_id) is str)
        key = event.key
        return topic, value, None if key is None else str(key).encode(), headers

    @staticmethod
    def _dumps(cls: type[Event], envelope: dict[str, Any], is_plain: bool) -> bytes:
        try:
            return json_codec.dumps(envelope, is_plain=is_plain)
        except (TypeError, ValueError) as exc:
            raise MalformedEnvelope(
                f"cannot encode {cls.__qualname__}: payload is not JSON-serializable ({exc}); "
                "use str/int/float/bool/None, tuples, dicts or datetime fields"
            ) from exc

    def check_encodable(self, classes: Iterable[type[Event]]) -> None:
        """``UnknownEventType`` (as :meth:`encode` raises it) if a class is not registered."""
        for cls in classes:
            if cls not in self._encoding:
                self._encode_plan(cls)

    def _encode_plan(self, cls: type[Event]) -> tuple[Any, ...]:
        """What encoding needs of a registered class, kept per class (and topic prefix):
        ``(prefix, topic, payload names or None, event_type, schema_version, headers)``."""
        event_type = getattr(cls, "event_type", "")
        if self._classes.get(event_type) is not cls:
            raise UnknownEventType(
                f"cannot encode {cls.__qualname__}: event type {cls.event_type!r} is not "
                "registered; register the class with the bus's EventRegistry"
            )
        prefix = self.topic_prefix
        plan = (prefix, f"{prefix}{cls.topic}", _payload_names(cls),  # type: ignore[arg-type]
                event_type, cls.schema_version, _type_headers(event_type))
        self._encoding[cls] = plan
        return plan

    # -- decoding -----------------------------------------------------------------------

    def decode(self, value: bytes | None) -> Event:
        """Turn value bytes back into an event; raise an ``EnvelopeError`` if they are not one."""
        if value is None:
            raise MalformedEnvelope("record has no value (a tombstone?); expected an event envelope")
        try:
            envelope = json_codec.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedEnvelope(
                f"record value is not UTF-8 JSON ({exc.__class__.__name__}: {exc}); "
                f"first bytes: {value[:40]!r}"
            ) from exc
        if not isinstance(envelope, dict):
            raise MalformedEnvelope(
                f"envelope must be a JSON object, got {type(envelope).__name__}"
            )
        if envelope.keys() != _ENVELOPE_KEYS:
            missing = [k for k in ENVELOPE_FIELDS if k not in envelope]
            extra = sorted(set(envelope) - _ENVELOPE_KEYS)
            raise MalformedEnvelope(
                f"envelope fields wrong: missing {missing}, unexpected {extra}; "
                f"expected exactly {list(ENVELOPE_FIELDS)}"
            )
        event_type = envelope["event_type"]
        if not isinstance(event_type, str):
            raise MalformedEnvelope(f"event_type must be a string, got {event_type!r}")
        cls = self._classes.get(event_type) or self.class_for(event_type)
        version = envelope["schema_version"]
        if type(version) is not int or not 0 < version <= cls.schema_version:
            if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                raise MalformedEnvelope(
                    f"schema_version must be a positive integer, got {version!r}")
            if version > cls.schema_version:
                raise MalformedEnvelope(
                    f"{event_type} schema_version {version} is newer than this code's "
                    f"{cls.schema_version}; deploy the newer event class"
                )
        payload = envelope["payload"]
        if not isinstance(payload, dict):
            raise MalformedEnvelope(f"payload must be a JSON object, got {type(payload).__name__}")
        event_id, at = envelope["event_id"], envelope["occurred_at"]
        try:
            if type(event_id) is not str or not _CANONICAL_UUID(event_id):
                event_id = str(uuid.UUID(str(event_id)))
            occurred_at = datetime.fromisoformat(at if type(at) is str else str(at))
        except ValueError as exc:
            raise MalformedEnvelope(f"event_id/occurred_at malformed: {exc}") from exc
        if occurred_at.tzinfo is None:
            raise MalformedEnvelope(
                f"occurred_at {envelope['occurred_at']!r} has no timezone; expected ISO 8601 UTC"
            )
        plan = self._decoding.get(cls)
        if plan is None:
            plan = self._decoding[cls] = _DecodePlan(_own_fields(cls))  # type: ignore[arg-type]
        own = plan.own
        if not payload.keys() <= own:
            bad_keys = sorted(set(payload) - own)
            raise MalformedEnvelope(f"{event_type} payload has unknown fields {bad_keys}")
        conversions, build = plan.conversions, plan.build
        if conversions is None:
            conversions = plan.conversions = _conversions(cls)  # type: ignore[arg-type]
            build = plan.build = _event_builder(cls, _METADATA_FIELDS) or cls
        try:
            kwargs = payload
            if conversions:
                kwargs = dict(payload)
                for name, annotation in conversions:
                    if name in kwargs:
                        kwargs[name] = _from_json_value(kwargs[name], annotation)
            if build is not cls:
                event = build(event_id, occurred_at, kwargs)  # type: ignore[misc]
                if event is not None:
                    return event  # type: ignore[no-any-return]
            return cls(event_id=event_id, occurred_at=occurred_at, **kwargs)
        except (TypeError, ValueError) as exc:
            raise MalformedEnvelope(
                f"{event_type} payload does not build the event: {exc}"
            ) from exc
