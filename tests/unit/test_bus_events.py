"""Events and the envelope: round trips, and typed errors for everything else."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import InitVar, dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any, ClassVar

import pytest
from offsetlab.bus import json_codec
from offsetlab.bus.errors import ConfigError, MalformedEnvelope, UnknownEventType
from offsetlab.bus.event_values import event_builder
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


# -- the envelope's JSON: the standard library's bytes, whichever library writes them --------


@pytest.fixture(params=["orjson", "stdlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test twice: with orjson when it is installed (skipped otherwise), and with the
    standard library only (what the bus does without the ``fast`` extra)."""
    if request.param == "orjson":
        pytest.importorskip("orjson")
        monkeypatch.setattr(json_codec, "_fast", json_codec._UNSET)
        monkeypatch.delenv("OFFSETLAB_JSON", raising=False)
        assert json_codec.backend().startswith("orjson")
    else:
        monkeypatch.setattr(json_codec, "_fast", None)
        assert json_codec.backend() == "json (stdlib)"
    return request.param


class Colour(StrEnum):
    RED = "red"


class Size(IntEnum):
    L = 3


@dataclass(frozen=True, kw_only=True)
class Everything(Event):
    topic: ClassVar[str] = "everything"
    text: str = "plain"
    number: int = 1
    ratio: float = 0.5
    items: tuple[object, ...] = ()
    extra: dict | None = None
    when: datetime | None = None


_AWKWARD = [
    {"text": "café ☕ \U0001f600"},  # non-ASCII: \\uXXXX escapes, surrogate pairs
    {"text": "tab\tnew\nline\x00\x1f\x7f\"quote\\ /slash"},  # control characters and DEL
    {"ratio": 1e-05}, {"ratio": 9.999999999999999e-05}, {"ratio": 1e16}, {"ratio": -0.0},
    {"ratio": 1e300}, {"ratio": 5e-324}, {"ratio": 123456.789},
    {"number": 2**63}, {"number": 2**64}, {"number": -(2**63) - 1}, {"number": 10**30},
    {"items": (1, "two", 3.0, None, True, (4, (5,)))},
    {"extra": {"b": 1, "a": {"é": 2, "z": [1, 2]}, "c": None}},
    {"extra": {"nested": {"deeper": {"deepest": list(range(5))}}}},
    {"text": Colour.RED, "number": Size.L},  # subclasses: the standard library decides
    {"when": datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)},  # no microseconds
    {"ratio": float("nan")}, {"ratio": float("inf")},  # json writes NaN/Infinity
]


@pytest.mark.parametrize("fields", _AWKWARD, ids=[f"awkward-{i}" for i in range(len(_AWKWARD))])
def test_the_bytes_are_the_standard_librarys(backend: str, fields: dict) -> None:
    reg = EventRegistry([Everything])
    event = Everything(**fields)
    value = reg.encode(event).value
    envelope = {"event_id": event.event_id, "event_type": "Everything",
                "occurred_at": event.occurred_at.isoformat(), "schema_version": 1,
                "payload": {k: v for k, v in event.payload().items()}}
    envelope["payload"]["items"] = json.loads(json.dumps(envelope["payload"]["items"]))
    if envelope["payload"]["when"] is not None:
        envelope["payload"]["when"] = envelope["payload"]["when"].isoformat()
    assert value == json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()
    decoded = reg.decode(value)
    assert json.dumps(decoded.payload(), sort_keys=True, default=str) == json.dumps(
        event.payload(), sort_keys=True, default=str)


def test_orjson_writes_and_reads_the_plain_envelopes(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("orjson")
    monkeypatch.setattr(json_codec, "_fast", json_codec._UNSET)
    monkeypatch.delenv("OFFSETLAB_JSON", raising=False)

    def refused(*args: object, **kwargs: object) -> None:
        raise AssertionError("the standard library was used")

    event = OrderPlaced(order_id="o-1", amount=5, tags=("a",))
    value = REG.encode(event).value
    monkeypatch.setattr(json_codec, "_stdlib_encode", refused)
    monkeypatch.setattr(json_codec.json, "loads", refused)
    assert REG.encode(event).value == value
    assert REG.decode(value) == event


def test_offsetlab_json_stdlib_turns_orjson_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_codec, "_fast", json_codec._UNSET)
    monkeypatch.setenv("OFFSETLAB_JSON", "stdlib")
    assert json_codec.backend() == "json (stdlib)"


@pytest.mark.parametrize("raw", [
    b'{"n": 18446744073709551616}', b'{"n": -9223372036854775809}',  # beyond 64 bits
    b'{"n": 123456789012345678901234567890}', b'{"f": NaN, "g": -Infinity}',
    b'{"s": "\\ud800"}', b'{"a": 1, "a": 2}', b'{"f": 1e400}', b' {"x": [1, 2.5, "\\u00e9"]} ',
])
def test_reading_gives_what_json_loads_gives(backend: str, raw: bytes) -> None:
    got, want = json_codec.loads(raw), json.loads(raw.decode("utf-8"))
    assert repr(got) == repr(want) and type(got) is type(want)


def test_a_round_trip_on_either_library(backend: str) -> None:
    reg = EventRegistry([OrderPlaced])
    event = OrderPlaced(order_id="o-ü", amount=2**70, tags=("x",),
                        due=datetime(2026, 3, 1, tzinfo=UTC))
    assert reg.decode(reg.encode(event).value) == event


def test_event_ids_are_random_version_4_uuid_strings() -> None:
    ids = {OrderPlaced(order_id="o", amount=1).event_id for _ in range(2000)}
    assert len(ids) == 2000
    for event_id in list(ids)[:200]:
        u = uuid.UUID(event_id)
        assert str(u) == event_id and u.version == 4 and u.variant == uuid.RFC_4122


def test_other_uuid_spellings_are_read_and_normalized() -> None:
    event = OrderPlaced(order_id="o", amount=1)
    for spelling in (event.event_id.upper(), "{" + event.event_id + "}",
                     event.event_id.replace("-", "")):
        assert REG.decode(_mutated_id(event, spelling)).event_id == event.event_id


def _mutated_id(event: Event, event_id: str) -> bytes:
    env = json.loads(REG.encode(event).value)
    env["event_id"] = event_id
    return json.dumps(env).encode()


def test_an_event_class_may_say_its_own_payload() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Shouting(Event):
        topic: ClassVar[str] = "loud"
        word: str

        def payload(self) -> dict[str, Any]:
            return {"word": self.word.upper()}

    reg = EventRegistry([Shouting])
    assert json.loads(reg.encode(Shouting(word="hi")).value)["payload"] == {"word": "HI"}


def test_a_malformed_datetime_in_the_payload_is_a_malformed_envelope() -> None:
    env = _valid()
    env["payload"]["due"] = "not a time"
    with pytest.raises(MalformedEnvelope, match="does not build the event"):
        REG.decode(_bytes(env))


def test_the_cached_utc_text_is_isoformat() -> None:
    import random
    from datetime import timedelta

    from offsetlab.bus.events import _utc_isoformat

    rng = random.Random(5)
    start = datetime(2026, 12, 31, 23, 59, 58, tzinfo=UTC)
    times = [start + timedelta(microseconds=rng.randrange(0, 4_000_000)) for _ in range(500)]
    times += [start, start.replace(microsecond=1), datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)]
    for at in times:  # the same second again and again, then the next: the cache turns over
        assert _utc_isoformat(at) == at.isoformat()


@pytest.mark.parametrize("micro", [0, 1, 999_999, 123_456])
def test_occurred_at_on_the_wire_is_isoformat_on_either_library(backend: str, micro: int) -> None:
    from datetime import timedelta, timezone

    for at in (datetime(2026, 11, 30, 9, 6, 17, micro, tzinfo=UTC),
               datetime(999, 1, 2, 3, 4, 5, micro, tzinfo=UTC),
               datetime(2026, 1, 1, 1, 0, 0, micro, tzinfo=timezone(timedelta(hours=1)))):
        event = OrderPlaced(order_id="o-1", amount=2**63, occurred_at=at)
        text = json.loads(REG.encode(event).value)["occurred_at"]
        assert text == at.astimezone(UTC).isoformat()
        assert REG.decode(REG.encode(event).value) == event


def test_encode_record_is_what_encode_gives() -> None:
    event = OrderPlaced(order_id="o-1", amount=5, tags=("a",))
    enc = REG.encode(event)
    assert REG.encode_record(event) == (enc.topic, enc.value, enc.key, enc.headers)
    prefixed = EventRegistry([OrderPlaced], topic_prefix="p.")
    assert prefixed.encode_record(event)[0] == "p.orders"
    prefixed.topic_prefix = "q."
    assert prefixed.encode_record(event)[0] == "q.orders"


def test_an_encoded_event_is_the_frozen_dataclass_value() -> None:
    import dataclasses

    from offsetlab.bus.events import EncodedEvent

    enc = REG.encode(OrderPlaced(order_id="o-1", amount=5))
    same = EncodedEvent(enc.topic, enc.key, enc.value, enc.headers, enc.event_type, enc.event_id)
    assert enc == same and repr(enc) == repr(same) and hash(enc) == hash(same)
    with pytest.raises(dataclasses.FrozenInstanceError):
        enc.topic = "other"  # type: ignore[misc]


@dataclass(frozen=True, kw_only=True)
class WithDefaults(Event):
    topic: ClassVar[str] = "defaults"
    n: int
    label: str = "x"
    tags: tuple[str, ...] = ()
    seen: list = field(default_factory=lambda: ["f"])


@dataclass(frozen=True, kw_only=True)
class Checked(Event):
    topic: ClassVar[str] = "checked"
    n: int

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n < 0:
            raise ValueError("n must be >= 0")


@dataclass(frozen=True, kw_only=True, slots=True)
class Slotted(Event):
    topic: ClassVar[str] = "slotted"
    n: int


@dataclass(frozen=True, kw_only=True)
class WithInitVar(Event):
    topic: ClassVar[str] = "initvar"
    n: int
    scale: InitVar[int] = 1

    def __post_init__(self, scale: int) -> None:
        super().__post_init__()


_BUILT = [
    (WithDefaults, True, {"n": 1}), (WithDefaults, True, {"n": 2, "label": "y", "seen": [1]}),
    (OrderPlaced, True, {"order_id": "o", "amount": 1}),
    (OrderPlaced, True, {"order_id": "o", "amount": 1, "tags": ("a",)}),
    (Checked, False, {"n": 3}), (Slotted, False, {"n": 3}), (WithInitVar, False, {"n": 3}),
]


@pytest.mark.parametrize(("cls", "fast", "kwargs"), _BUILT,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(_BUILT)])
def test_decoded_events_are_what_their_class_builds(cls: type[Event], fast: bool,
                                                    kwargs: dict) -> None:
    """Plain classes are built without their __init__ (event_builder); the others by it."""
    assert (event_builder(cls, ("event_id", "occurred_at")) is not None) is fast
    reg = EventRegistry([cls])
    event = cls(**kwargs)
    decoded = reg.decode(reg.encode(event).value)
    again = reg.decode(reg.encode(event).value)
    assert decoded == event and type(decoded) is cls
    if fast:
        assert list(vars(decoded).items()) == list(vars(event).items())  # same fields, order
        with pytest.raises(dataclasses.FrozenInstanceError):
            decoded.n = 5  # type: ignore[attr-defined]
    if cls is WithDefaults and "seen" not in kwargs:  # a factory runs per event, as in __init__
        assert decoded.seen == ["f"] and decoded.seen is not again.seen


def test_a_missing_field_or_failed_check_is_reported_as_the_class_says() -> None:
    reg = EventRegistry([WithDefaults, Checked])
    env = json.loads(reg.encode(WithDefaults(n=1)).value)
    del env["payload"]["n"]
    with pytest.raises(MalformedEnvelope, match="does not build the event.*'n'"):
        reg.decode(json.dumps(env).encode())
    env = json.loads(reg.encode(Checked(n=1)).value)
    env["payload"]["n"] = -1
    with pytest.raises(MalformedEnvelope, match="does not build the event: n must be >= 0"):
        reg.decode(json.dumps(env).encode())
