"""``KafkaBus.publish``/``publish_many`` over a fake transport: what reaches the producer,
in which order, and what happens when an event cannot be encoded (no broker needed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from offsetlab.bus import KafkaBus, KafkaBusConfig
from offsetlab.bus.errors import MalformedEnvelope, UnknownEventType
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.interface import ActivityKind, Receipt


@dataclass(frozen=True, kw_only=True)
class Placed(Event):
    topic: ClassVar[str] = "orders"
    n: int
    extra: Any = None

    @property
    def key(self) -> str:
        return f"k{self.n}"


@dataclass(frozen=True, kw_only=True)
class Stranger(Event):
    topic: ClassVar[str] = "elsewhere"


class FakeProducers:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, Any]] = []
        self.calls = 0

    def publish(self, topic: str, value: bytes, key: bytes | None, headers: Any) -> Receipt:
        self.sent.append((topic, value, key, headers))
        return Receipt(topic, 0, len(self.sent) - 1)

    def publish_many(self, records: Sequence[tuple[str, bytes, bytes | None, Any]]
                     ) -> list[Receipt]:
        self.calls += 1
        receipts = []
        for record in records:
            self.sent.append(record)
            receipts.append(Receipt(record[0], 0, len(self.sent) - 1))
        return receipts

    def close(self, timeout_s: float = 10.0) -> None:
        pass


def _bus(*, keep_activity: bool = False) -> tuple[KafkaBus, FakeProducers, EventRegistry]:
    registry = EventRegistry([Placed], topic_prefix="t.")
    bus = KafkaBus(registry, KafkaBusConfig(bootstrap_servers="127.0.0.1:9",
                                            keep_activity=keep_activity))
    fake = FakeProducers()
    bus._producers = fake  # type: ignore[assignment]
    return bus, fake, registry


@pytest.mark.parametrize("keep_activity", [False, True])
def test_publish_many_sends_the_encoded_records_in_order(keep_activity: bool) -> None:
    bus, fake, registry = _bus(keep_activity=keep_activity)
    events = [Placed(n=i) for i in range(5)]
    receipts = bus.publish_many(iter(events))
    assert [r.offset for r in receipts] == [0, 1, 2, 3, 4]
    assert fake.sent == [registry.encode_record(e) for e in events]
    assert fake.sent[0][:1] == ("t.orders",) and fake.sent[0][2] == b"k0"
    if keep_activity:
        published = bus.activities(ActivityKind.PUBLISHED)
        assert [a.key for a in published] == [f"k{i}" for i in range(5)]
    bus.publish(Placed(n=9))
    assert fake.sent[-1][2] == b"k9" and fake.sent[-1][0] == "t.orders"
    bus.close()


def test_an_unregistered_class_is_refused_before_anything_is_sent() -> None:
    bus, fake, _ = _bus()
    with pytest.raises(UnknownEventType, match="Stranger"):
        bus.publish_many([Placed(n=1), Stranger()])
    assert fake.sent == []
    bus.close()


@pytest.mark.parametrize("keep_activity", [False, True])
def test_an_unencodable_payload_raises_before_anything_is_sent(keep_activity: bool) -> None:
    bus, fake, _ = _bus(keep_activity=keep_activity)
    with pytest.raises(MalformedEnvelope, match="not JSON-serializable"):
        bus.publish_many([Placed(n=1), Placed(n=2, extra=object())])
    assert fake.sent == [] and fake.calls == 0
    bus.publish_many([Placed(n=3)])
    assert [r[2] for r in fake.sent] == [b"k3"]
    bus.close()
