"""Events and the envelope: round trips, and typed errors for everything else."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from offsetlab.bus.errors import ConfigError, MalformedEnvelope, UnknownEventType
from offsetlab.bus.events import (
    CONTENT_TYPE,
    ENVELOPE_FIELDS,
    EVENT_TYPE_HEADER,
    Event,
    EventRegistry,
)


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(Event):
    topic: ClassVar[str] = "orders"
    order_id: str
    amount: int
    tags: tuple[str, ...] = ()
    due: datetime | None = None
    note: str | None = None

    @property
    def key(self) -> str:
        return self.order_id


@dataclass(frozen=True, kw_only=True)
class Heartbeat(Event):
    topic: ClassVar[str] = "beats"
    event_type: ClassVar[str] = "heartbeat.v1"
    schema_version: ClassVar[int] = 2
    n: int


REG = EventRegistry([OrderPlaced, Heartbeat])


def _envelope(event: Event) -> dict:
    return json.loads(REG.encode(event).value)


def test_round_trip_gives_an_equal_event_with_types_restored() -> None:
    event = OrderPlaced(order_id="o-1", amount=5, tags=("a", "b"),
                        due=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    decoded = REG.decode(REG.encode(event).value)
    assert decoded == event
    assert isinstance(decoded.tags, tuple) and isinstance(decoded.due, datetime)


def test_envelope_has_exactly_the_documented_fields() -> None:
    event = OrderPlaced(order_id="o-1", amount=5)
    env = _envelope(event)
    assert tuple(sorted(env)) == tuple(sorted(ENVELOPE_FIELDS))
    assert env["event_type"] == "OrderPlaced"
    assert env["event_id"] == event.event_id
    assert datetime.fromisoformat(env["occurred_at"]) == event.occurred_at
    assert env["schema_version"] == 1
    assert env["payload"] == {"order_id": "o-1", "amount": 5, "tags": [], "due": None,
                              "note": None}


def test_encode_gives_topic_key_and_type_headers() -> None:
    enc = REG.encode(OrderPlaced(order_id="o-9", amount=1))
    assert (enc.topic, enc.key) == ("orders", b"o-9")
    assert dict(enc.headers) == {EVENT_TYPE_HEADER: b"OrderPlaced", "content-type": CONTENT_TYPE}
    beat = REG.encode(Heartbeat(n=1))
    assert beat.key is None and beat.event_type == "heartbeat.v1"
    assert _envelope(Heartbeat(n=1))["schema_version"] == 2


def test_topic_prefix_applies_to_encoded_topic() -> None:
    reg = EventRegistry([OrderPlaced], topic_prefix="run-42.")
    assert reg.encode(OrderPlaced(order_id="x", amount=1)).topic == "run-42.orders"
    assert reg.classes_for_topic("run-42.orders") == (OrderPlaced,)


def test_ids_and_times_are_fresh_per_event_and_aware() -> None:
    a, b = OrderPlaced(order_id="o", amount=1), OrderPlaced(order_id="o", amount=1)
    assert a.event_id != b.event_id and a.occurred_at.tzinfo is not None
    with pytest.raises(ValueError, match="timezone-aware"):
        OrderPlaced(order_id="o", amount=1, occurred_at=datetime(2026, 1, 1))


def _valid() -> dict:
    return _envelope(OrderPlaced(order_id="o-1", amount=5))


def _bytes(env: object) -> bytes:
    return json.dumps(env).encode()


@pytest.mark.parametrize(("raw", "match"), [
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"{not json", "not UTF-8 JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (None, "no value"),
])
def test_malformed_bytes_raise_malformed_envelope(raw: bytes | None, match: str) -> None:
    with pytest.raises(MalformedEnvelope, match=match):
        REG.decode(raw)


def _mutated(**changes: object) -> bytes:
    env = _valid()
    for key, value in changes.items():
        if value is ...:
            del env[key]
        else:
            env[key] = value
    return _bytes(env)


@pytest.mark.parametrize(("raw", "match"), [
    (_mutated(payload=...), "missing \\['payload'\\]"),
    (_mutated(extra=1), "unexpected \\['extra'\\]"),
    (_mutated(event_type=5), "event_type must be a string"),
    (_mutated(schema_version="1"), "schema_version must be a positive integer"),
    (_mutated(schema_version=3), "newer than this code's 1"),
    (_mutated(payload=[1]), "payload must be a JSON object"),
    (_mutated(payload={"order_id": "o", "amount": 1, "colour": "red"}), "unknown fields"),
    (_mutated(payload={"order_id": "o"}), "does not build the event"),
    (_mutated(event_id="not-a-uuid"), "event_id/occurred_at malformed"),
    (_mutated(occurred_at="2026-01-01T00:00:00"), "no timezone"),
], ids=["no-payload", "extra-field", "type-not-str", "version-str", "version-newer",
        "payload-list", "payload-extra", "payload-missing", "bad-uuid", "naive-time"])
def test_wrong_envelopes_raise_malformed_envelope(raw: bytes, match: str) -> None:
    with pytest.raises(MalformedEnvelope, match=match):
        REG.decode(raw)


def test_unknown_type_raises_unknown_event_type_listing_known() -> None:
    with pytest.raises(UnknownEventType, match="'Refund' is not registered.*OrderPlaced"):
        REG.decode(_mutated(event_type="Refund"))


def test_encoding_an_unregistered_event_is_refused() -> None:
    with pytest.raises(UnknownEventType, match="not registered"):
        EventRegistry().encode(OrderPlaced(order_id="o", amount=1))


def test_registration_checks_class_topic_and_duplicates() -> None:
    @dataclass(frozen=True, kw_only=True)
    class NoTopic(Event):
        n: int

    @dataclass(frozen=True, kw_only=True)
    class OtherOrderPlaced(Event):
        topic: ClassVar[str] = "orders2"
        event_type: ClassVar[str] = "OrderPlaced"

    reg = EventRegistry([OrderPlaced])
    with pytest.raises(ConfigError, match="topic is not set"):
        reg.register(NoTopic)
    with pytest.raises(ConfigError, match="registered twice"):
        reg.register(OtherOrderPlaced)
    with pytest.raises(ConfigError, match="not an Event dataclass"):
        reg.register(dict)  # type: ignore[arg-type]
    reg.register(OrderPlaced)  # the same class again is fine
    assert reg.event_types == ("OrderPlaced",)


def test_unserializable_payload_is_reported_at_encode() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Odd(Event):
        topic: ClassVar[str] = "odd"
        thing: object

    reg = EventRegistry([Odd])
    with pytest.raises(MalformedEnvelope, match="not JSON-serializable"):
        reg.encode(Odd(thing=object()))
