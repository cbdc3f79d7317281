"""The subscription core decides the same with and without its happy-path shortcut.

Without listeners or breakers, ``SubscriptionCore.handle`` decodes, handles and settles a
record without provenance headers itself; everything else goes through ``process_record``.
Each case runs twice, once with a listener (the general path only) and once without (the
shortcut where it applies), and the port must see the same settles, seeks, pauses and
copies, and the handler the same calls.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from offsetlab.bus import (
    Event,
    EventRegistry,
    InPlaceRetry,
    MainTopicRetry,
    Ok,
    Reject,
    Retry,
)
from offsetlab.bus.core import SubscriptionContext, SubscriptionCore
from offsetlab.bus.headers import ATTEMPT, SourceRecord, failure_headers
from offsetlab.bus.interface import Receipt, SubscriptionSpec
from offsetlab.bus.types import ConsumedRecord, TopicPartition


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ping(Event):
    topic = "pings"
    n: int = 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pong(Event):
    topic = "pings"
    n: int = 0


REGISTRY = EventRegistry([Ping, Pong])
NOW = 1_767_225_600.0


class Port:
    def __init__(self) -> None:
        self.actions: list[tuple[Any, ...]] = []
        self._paused: set[TopicPartition] = set()

    def settle(self, record: Any) -> None:
        self.actions.append(("settle", record.offset))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.actions.append(("seek", tp, offset))

    def pause(self, tps: Any) -> None:
        self._paused.update(tps)
        self.actions.append(("pause", tuple(tps)))

    def resume(self, tps: Any) -> None:
        self._paused.difference_update(tps)

    def paused(self) -> frozenset[TopicPartition]:
        return frozenset(self._paused)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset({TopicPartition("pings", 0)})

    def stopping(self) -> bool:
        return False


class Copies:
    def __init__(self, port: Port) -> None:
        self.port = port

    def partitions(self, topic: str) -> frozenset[int]:
        return frozenset({0})

    def send_copy(self, topic: str, value: Any, key: Any, headers: Any, partition: Any) -> Any:
        self.port.actions.append(("copy", topic, dict(headers).get(ATTEMPT)))
        return Receipt(topic, 0, 0)

    def wait_all(self, items: Any) -> list[Any]:
        return [handle for _, handle in items]


def record(offset: int, event: Event | None = None, *, value: bytes | None = None,
           headers: tuple[tuple[str, bytes], ...] = ()) -> ConsumedRecord:
    if event is not None:
        encoded = REGISTRY.encode(event)
        value, headers = encoded.value, (*encoded.headers, *headers)
    return ConsumedRecord("pings", 0, offset, b"k", value, list(headers), 0, 0)


def copy_headers(group: str, attempt: int) -> tuple[tuple[str, bytes], ...]:
    return tuple(failure_headers((), source=SourceRecord(topic="pings", partition=0, offset=0),
                                 group=group, attempt=attempt, reason="earlier failure"))


def run(records: list[ConsumedRecord], handler: Any, *, listening: bool,
        retry: Any = None) -> tuple[list[tuple[Any, ...]], list[int]]:
    calls: list[int] = []

    def handle(event: Event) -> Any:
        calls.append(event.n)  # type: ignore[attr-defined]
        return handler(event)

    spec = SubscriptionSpec(source=Ping, handler=handle, group="g",
                            retry=retry or MainTopicRetry(max_retries=2), topic="pings")
    port = Port()
    reports: list[Any] = []
    context = SubscriptionContext(registry=REGISTRY, report=lambda kind, **kw: reports.append(kind),
                                  listening=lambda: listening, copies=Copies(port),
                                  now=lambda: NOW)
    SubscriptionCore(spec, context).handle(records, port)
    return port.actions, calls


def boom(exc: BaseException) -> Any:
    def handler(event: Event) -> Any:
        raise exc
    return handler


CASES = {
    "ok": ([record(0, Ping(n=1)), record(1, Ping(n=2))], lambda e: None, None),
    "ok-object": ([record(0, Ping(n=1))], lambda e: Ok(), None),
    "retry-outcome": ([record(0, Ping(n=1)), record(1, Ping(n=2))],
                      lambda e: Retry(reason="later"), None),
    "reject": ([record(0, Ping(n=1))], lambda e: Reject(reason="no"), None),
    "raises-retriable": ([record(0, Ping(n=1))], boom(ConnectionError("down")), None),
    "raises-fatal": ([record(0, Ping(n=1))], boom(ValueError("bad")), None),
    "returns-junk": ([record(0, Ping(n=1))], lambda e: True, None),
    "other-event-type": ([record(0, Pong(n=1)), record(1, Ping(n=2))], lambda e: None, None),
    "malformed": ([record(0, value=b"not json"), record(1, Ping(n=2))], lambda e: None, None),
    "own-copy-attempt-3": ([record(0, Ping(n=1), headers=copy_headers("g", 2))],
                           boom(ConnectionError("down")), None),
    "other-groups-copy": ([record(0, Ping(n=1), headers=copy_headers("other", 2))],
                          lambda e: None, None),
    "in-place": ([record(0, Ping(n=1)), record(1, Ping(n=2))], boom(TimeoutError("slow")),
                 InPlaceRetry(max_retries=2)),
    "in-place-at-once": ([record(0, Ping(n=1)), record(1, Ping(n=2))],
                         lambda e: Retry(reason="again", delay_s=0.0), InPlaceRetry(max_retries=2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_shortcut_decides_as_the_rule_book(name: str) -> None:
    records, handler, retry = CASES[name]
    assert run(records, handler, listening=True, retry=retry) == \
        run(records, handler, listening=False, retry=retry)


def test_the_cases_cover_every_kind_of_action() -> None:
    seen = set()
    for records, handler, retry in CASES.values():
        actions, _ = run(records, handler, listening=False, retry=retry)
        seen.update(a[0] for a in actions)
    assert seen == {"settle", "seek", "pause", "copy"}
    actions, calls = run(*CASES["own-copy-attempt-3"][:2], listening=False)
    assert actions == [("copy", "pings", (3).to_bytes(4, "big")), ("settle", 0)] and calls == [1]
    actions, calls = run(*CASES["other-groups-copy"][:2], listening=False)
    assert actions == [("settle", 0)] and calls == []
