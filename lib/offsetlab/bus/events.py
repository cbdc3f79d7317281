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
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from offsetlab.bus.errors import ConfigError, MalformedEnvelope, UnknownEventType

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


def _new_event_id() -> str:
    return str(uuid.uuid4())


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


def _to_json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_to_json_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_json_value(v) for k, v in value.items()}
    return value


def _from_json_value(value: Any, annotation: Any) -> Any:
    """Turn a JSON value back into the field's declared type where JSON lost it."""
    origin = typing.get_origin(annotation)
    if annotation is datetime and isinstance(value, str):
        return datetime.fromisoformat(value)
    if (annotation is tuple or origin is tuple) and isinstance(value, list):
        args = typing.get_args(annotation)
        inner = args[0] if args else Any
        return tuple(_from_json_value(v, inner) for v in value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is type(None):
                continue
            converted = _from_json_value(value, arg)
            if converted is not value:
                return converted
    return value


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints`` once per event class (~300 µs a call: it was most of the
    cost of decoding a record)."""
    return typing.get_type_hints(cls)


class EventRegistry:
    """Maps ``event_type`` names to event classes, and encodes/decodes the envelope."""

    def __init__(self, event_classes: Iterable[type[Event]] = (), *, topic_prefix: str = "") -> None:
        """``topic_prefix`` is put before every event class's ``topic`` on the wire (tests
        use a uuid prefix so runs on one broker never share topics)."""
        self._classes: dict[str, type[Event]] = {}
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
        cls = type(event)
        if cls not in self:
            raise UnknownEventType(
                f"cannot encode {cls.__qualname__}: event type {cls.event_type!r} is not "
                "registered; register the class with the bus's EventRegistry"
            )
        envelope = {
            "event_type": cls.event_type,
            "event_id": event.event_id,
            "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
            "schema_version": cls.schema_version,
            "payload": _to_json_value(event.payload()),
        }
        try:
            value = json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()
        except (TypeError, ValueError) as exc:
            raise MalformedEnvelope(
                f"cannot encode {cls.__qualname__}: payload is not JSON-serializable ({exc}); "
                "use str/int/float/bool/None, tuples, dicts or datetime fields"
            ) from exc
        key = event.key
        return EncodedEvent(
            topic=self.topic_for(cls),
            key=None if key is None else str(key).encode(),
            value=value,
            headers=(
                (EVENT_TYPE_HEADER, cls.event_type.encode()),
                (CONTENT_TYPE_HEADER, CONTENT_TYPE),
            ),
            event_type=cls.event_type,
            event_id=event.event_id,
        )

    # -- decoding -----------------------------------------------------------------------

    def decode(self, value: bytes | None) -> Event:
        """Turn value bytes back into an event; raise an ``EnvelopeError`` if they are not one."""
        if value is None:
            raise MalformedEnvelope("record has no value (a tombstone?); expected an event envelope")
        try:
            envelope = json.loads(value.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MalformedEnvelope(
                f"record value is not UTF-8 JSON ({exc.__class__.__name__}: {exc}); "
                f"first bytes: {value[:40]!r}"
            ) from exc
        if not isinstance(envelope, dict):
            raise MalformedEnvelope(
                f"envelope must be a JSON object, got {type(envelope).__name__}"
            )
        missing = [k for k in ENVELOPE_FIELDS if k not in envelope]
        extra = sorted(set(envelope) - set(ENVELOPE_FIELDS))
        if missing or extra:
            raise MalformedEnvelope(
                f"envelope fields wrong: missing {missing}, unexpected {extra}; "
                f"expected exactly {list(ENVELOPE_FIELDS)}"
            )
        event_type = envelope["event_type"]
        if not isinstance(event_type, str):
            raise MalformedEnvelope(f"event_type must be a string, got {event_type!r}")
        cls = self.class_for(event_type)
        version = envelope["schema_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise MalformedEnvelope(f"schema_version must be a positive integer, got {version!r}")
        if version > cls.schema_version:
            raise MalformedEnvelope(
                f"{event_type} schema_version {version} is newer than this code's "
                f"{cls.schema_version}; deploy the newer event class"
            )
        payload = envelope["payload"]
        if not isinstance(payload, dict):
            raise MalformedEnvelope(f"payload must be a JSON object, got {type(payload).__name__}")
        try:
            event_id = str(uuid.UUID(str(envelope["event_id"])))
            occurred_at = datetime.fromisoformat(str(envelope["occurred_at"]))
        except ValueError as exc:
            raise MalformedEnvelope(f"event_id/occurred_at malformed: {exc}") from exc
        if occurred_at.tzinfo is None:
            raise MalformedEnvelope(
                f"occurred_at {envelope['occurred_at']!r} has no timezone; expected ISO 8601 UTC"
            )
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        own = [n for n in fields if n not in _METADATA_FIELDS]
        bad_keys = sorted(set(payload) - set(own))
        if bad_keys:
            raise MalformedEnvelope(f"{event_type} payload has unknown fields {bad_keys}")
        # mypy#11470: mypy does not see a class object as Hashable (it is); the cache keys on it
        hints = _type_hints(cls)  # type: ignore[arg-type]
        kwargs = {k: _from_json_value(v, hints.get(k, Any)) for k, v in payload.items()}
        try:
            return cls(event_id=event_id, occurred_at=occurred_at, **kwargs)
        except (TypeError, ValueError) as exc:
            raise MalformedEnvelope(
                f"{event_type} payload does not build the event: {exc}"
            ) from exc
