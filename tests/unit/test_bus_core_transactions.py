"""The subscription core in the transactional mode: what a handler publishes is written into
the batch's transaction only when its record settles, on both the happy-path shortcut and
the general path (with a listener)."""

from __future__ import annotations

from typing import Any

import pytest
from offsetlab.bus import Event, MainTopicRetry, Reject, Retry
from offsetlab.bus.core import SubscriptionContext, SubscriptionCore
from offsetlab.bus.handler_publishes import HandlerPublishes
from offsetlab.bus.interface import Receipt, SubscriptionSpec
from test_bus_core import NOW, REGISTRY, Ping, Port, record


class Txn:
    """The transaction as the core sees it: copies and handler publishes, in order."""

    transactional_id = "t.g"

    def __init__(self, port: Port) -> None:
        self.port = port

    def partitions(self, topic: str) -> frozenset[int]:
        return frozenset({0})

    def send_copy(self, topic: str, value: Any, key: Any, headers: Any, partition: Any) -> Any:
        self.port.actions.append(("copy", topic))
        return Receipt(topic, 0, 0)

    def send(self, topic: str, value: Any, key: Any, headers: Any) -> Any:
        self.port.actions.append(("published", REGISTRY.decode(value).n))  # type: ignore[attr-defined]
        return None

    def wait_all(self, items: Any) -> list[Any]:
        return [handle for _, handle in items]


def run(answers: dict[int, Any], *, listening: bool) -> list[tuple[Any, ...]]:
    publishes = HandlerPublishes()

    def handler(event: Event) -> Any:
        n = event.n  # type: ignore[attr-defined]
        buffer = publishes.buffer()
        assert buffer is not None, "the buffer is open while the handler runs"
        buffer.append(REGISTRY.encode_record(Ping(n=100 + n)))
        answer = answers.get(n)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    spec = SubscriptionSpec(source=Ping, handler=handler, group="g",
                            retry=MainTopicRetry(max_retries=2), topic="pings")
    port = Port()
    txn = Txn(port)
    context = SubscriptionContext(registry=REGISTRY, report=lambda kind, **kw: None,
                                  listening=lambda: listening, copies=txn, now=lambda: NOW,
                                  publishes=publishes, transaction=txn)  # type: ignore[arg-type]
    SubscriptionCore(spec, context).handle([record(i, Ping(n=i)) for i in range(4)], port)
    assert publishes.buffer() is None, "the buffer is closed after the batch"
    return port.actions


@pytest.mark.parametrize("listening", [False, True])
def test_only_settled_records_publish(listening: bool) -> None:
    actions = run({1: Retry(reason="later"), 2: Reject(reason="no"),
                   3: ConnectionError("down")}, listening=listening)
    assert [a for a in actions if a[0] == "published"] == [("published", 100)]
    assert ("settle", 0) in actions
    assert [a for a in actions if a[0] == "copy"] == [
        ("copy", "pings"), ("copy", "pings-dlt"), ("copy", "pings")]


@pytest.mark.parametrize("listening", [False, True])
def test_every_settled_record_publishes_before_it_settles(listening: bool) -> None:
    actions = run({}, listening=listening)
    assert actions == [x for n in range(4) for x in (("published", 100 + n), ("settle", n))]
