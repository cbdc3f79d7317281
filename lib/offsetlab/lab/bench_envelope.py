"""The envelope's parts, timed alone (``offsetlab bench`` prints them before the broker runs).

Microseconds per event, best of a few rounds, for the bus's choice of each part and the
obvious alternative beside it:

- ``uuid4``: the bus's event id (a random version 4 UUID string from 16 bytes of
  ``os.urandom``) and ``str(uuid.uuid4())``;
- ``timestamp``: ``datetime.now(UTC)`` when the event is made plus ``isoformat()`` when it
  is encoded;
- ``json``: writing the envelope (:func:`offsetlab.bus.json_codec.dumps`) and, beside it,
  ``json.dumps(..., separators=(",", ":"), sort_keys=True)``; ``read`` likewise;
- ``headers``: the two headers of an encoded event (made once per event type) and reading a
  consumed record's delivery headers (:func:`offsetlab.bus.headers.delivery_of`);
- ``encode`` / ``decode``: :meth:`EventRegistry.encode` / ``decode`` of a whole event.
"""

from __future__ import annotations

import json
import timeit
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from offsetlab.bus import json_codec
from offsetlab.bus.events import EventRegistry, _new_event_id, _type_headers
from offsetlab.bus.headers import delivery_of

from .bench_bus import BenchEvent

__all__ = ["envelope_parts", "format_parts"]


def _us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def envelope_parts(number: int = 20_000) -> dict[str, Any]:
    """Microseconds per event of each part (see the module docstring)."""
    registry = EventRegistry([BenchEvent])
    event = BenchEvent(seq=12345)
    encoded = registry.encode(event)
    value, headers = encoded.value, list(encoded.headers)
    envelope = json.loads(value)
    std_dumps = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
    at = event.occurred_at
    return {
        "json backend": json_codec.backend(),
        "uuid4": _us(_new_event_id, number),
        "uuid4 uuid.uuid4": _us(lambda: str(uuid.uuid4()), number),
        "timestamp": _us(lambda: datetime.now(UTC), number) + _us(at.isoformat, number),
        "json": _us(lambda: json_codec.dumps(envelope, is_plain=True), number),
        "json stdlib": _us(lambda: std_dumps(envelope).encode(), number),
        "json read": _us(lambda: json_codec.loads(value), number),
        "json read stdlib": _us(lambda: json.loads(value.decode("utf-8")), number),
        "headers": _us(lambda: _type_headers(BenchEvent.event_type), number)
        + _us(lambda: delivery_of(headers, "group", "topic"), number),
        "new event": _us(lambda: BenchEvent(seq=1), number),
        "encode": _us(lambda: registry.encode(event), number),
        "decode": _us(lambda: registry.decode(value), number),
        "bytes": len(value),
    }


def format_parts(parts: dict[str, Any]) -> list[str]:
    """The two lines ``offsetlab bench`` prints."""
    return [
        f"envelope parts (us/event): uuid4 {parts['uuid4']:.2f}, timestamp "
        f"{parts['timestamp']:.2f}, json {parts['json']:.2f}, headers {parts['headers']:.2f}",
        f"envelope details (us/event): uuid.uuid4() {parts['uuid4 uuid.uuid4']:.2f}; json "
        f"stdlib {parts['json stdlib']:.2f}; read json {parts['json read']:.2f} (stdlib "
        f"{parts['json read stdlib']:.2f}); new event {parts['new event']:.2f}, encode "
        f"{parts['encode']:.2f}, decode {parts['decode']:.2f}; {parts['bytes']} bytes, "
        f"json backend {parts['json backend']}",
    ]
