"""process_record (the rules both buses follow), fed kafka-python's own ConsumerRecord;
SubscriptionSpec; and the adapter's import boundary."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

from kafka.consumer.fetcher import ConsumerRecord
from offsetlab.bus.breaker import CircuitBreaker
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.headers import SourceRecord, failure_headers
from offsetlab.bus.interface import SubscriptionSpec, VerdictKind, process_record
from offsetlab.bus.memory import ManualClock
from offsetlab.bus.outcomes import Retry
from offsetlab.bus.retry import Action, InPlaceRetry, MainTopicRetry, RetryTopicRetry


@dataclass(frozen=True, kw_only=True)
class Order(Event):
    topic: ClassVar[str] = "orders"
    n: int


@dataclass(frozen=True, kw_only=True)
class Refund(Event):
    topic: ClassVar[str] = "orders"
    n: int


REG = EventRegistry([Order, Refund])
CLOCK = ManualClock()


def _record(value: bytes | None, headers=(), *, topic: str = "orders", offset: int = 5,
            timestamp_type: int = 0) -> ConsumerRecord:
    return ConsumerRecord(topic, 1, None, offset, 1_767_225_600_000, timestamp_type, b"k", value,
                          list(headers), None, 1, len(value or b""), 0)


def _spec(handler, retry=None, **kw) -> SubscriptionSpec:
    return SubscriptionSpec(source=Order, handler=handler, group="billing",
                            retry=retry or MainTopicRetry(), **kw)


def test_handler_outcome_becomes_a_decision_and_delivery_is_reported() -> None:
    seen: list[tuple[object, int]] = []
    spec = _spec(lambda e: Retry(reason="busy"))
    v = process_record(spec, REG, _record(REG.encode(Order(n=1)).value), now=CLOCK,
                       on_delivery=lambda e, a: seen.append((e, a)))
    assert v.kind is VerdictKind.DECIDED and v.decision is not None
    assert (v.decision.action, v.decision.target_topic, v.decision.attempt) == (
        Action.REPRODUCE, "orders", 2)
    assert [(type(e).__name__, a) for e, a in seen] == [("Order", 1)]


def test_undecodable_value_is_decided_without_calling_the_handler() -> None:
    called: list[Event] = []
    v = process_record(_spec(called.append), REG, _record(b"garbage"), now=CLOCK)
    assert v.kind is VerdictKind.DECIDED and called == []
    assert v.decision is not None and v.decision.action is Action.DEAD_LETTER
    assert v.decision.target_topic == "orders-dlt"


def test_other_event_types_and_other_groups_copies_are_skipped() -> None:
    called: list[Event] = []
    spec = _spec(called.append)
    refund = process_record(spec, REG, _record(REG.encode(Refund(n=1)).value), now=CLOCK)
    assert refund.kind is VerdictKind.SKIP and "Refund not subscribed" in refund.detail
    copy_headers = failure_headers((), source=SourceRecord(topic="orders", partition=1, offset=2),
                                   group="shipping", attempt=2, reason="retry: x")
    copy = process_record(spec, REG, _record(REG.encode(Order(n=2)).value, copy_headers),
                          now=CLOCK)
    assert copy.kind is VerdictKind.SKIP and called == []


def test_not_before_in_the_future_waits_and_in_the_past_delivers() -> None:
    called: list[Event] = []
    value = REG.encode(Order(n=1)).value

    def headers(not_before: float):
        return failure_headers((), source=SourceRecord(topic="orders", partition=1, offset=2),
                               group="billing", attempt=3, reason="retry: x",
                               not_before=not_before)

    spec = _spec(called.append)
    wait = process_record(spec, REG, _record(value, headers(CLOCK() + 2)), now=CLOCK)
    assert wait.kind is VerdictKind.WAIT and wait.not_before == CLOCK() + 2 and called == []
    due = process_record(spec, REG, _record(value, headers(CLOCK() - 1)), now=CLOCK)
    assert due.kind is VerdictKind.DECIDED and due.attempt == 3 and len(called) == 1


def test_open_breaker_holds_the_record() -> None:
    breaker = CircuitBreaker("db", clock=CLOCK)
    breaker.force_open()
    called: list[Event] = []
    v = process_record(_spec(called.append, depends_on=(breaker,)), REG,
                       _record(REG.encode(Order(n=1)).value), now=CLOCK)
    assert v.kind is VerdictKind.HOLD and "db" in v.detail and called == []


def test_retry_topic_record_is_decided_against_its_original_topic() -> None:
    strategy = RetryTopicRetry(max_retries=5)
    headers = failure_headers((), source=SourceRecord(topic="orders", partition=1, offset=2),
                              group="billing", attempt=2, reason="retry: x", not_before=0.0)

    def fail(e: Event) -> None:
        raise TimeoutError("slow")

    v = process_record(_spec(fail, retry=strategy), REG,
                       _record(REG.encode(Order(n=1)).value, headers, topic="orders-retry"),
                       now=CLOCK)
    assert v.decision is not None and v.decision.target_topic == "orders-retry"
    assert v.decision.attempt == 3


def test_in_place_attempts_come_from_the_bus() -> None:
    def fail(e: Event) -> None:
        raise ConnectionError("down")

    v = process_record(_spec(fail, retry=InPlaceRetry(max_retries=3)), REG,
                       _record(REG.encode(Order(n=1)).value), now=CLOCK, attempt_override=4)
    assert v.decision is not None and v.decision.action is Action.DEAD_LETTER


def test_source_record_of_kafka_consumer_record_maps_timestamp_type() -> None:
    src = SourceRecord.of(_record(b"x", timestamp_type=1))
    assert (src.topic, src.partition, src.offset, src.timestamp_ms, src.timestamp_type) == (
        "orders", 1, 5, 1_767_225_600_000, "LogAppendTime")


def test_spec_defaults_and_topics() -> None:
    spec = _spec(lambda e: None, retry=RetryTopicRetry())
    assert spec.topic == "orders" and spec.topics == ("orders", "orders-retry")
    assert spec.event_type == "Order" and spec.name.startswith("billing:")
    by_topic = SubscriptionSpec(source="raw-topic", handler=lambda e: None, group="g")
    assert by_topic.event_type is None and by_topic.topics == ("raw-topic",)


def test_helper_b_modules_import_only_kafka_and_stdlib() -> None:
    modules = ["events", "aggregate", "outcomes", "classify", "breaker", "headers", "retry",
               "interface", "memory"]
    code = (
        "import sys\n"
        + "".join(f"import offsetlab.bus.{m}\n" for m in modules)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'pandas', 'matplotlib', 'numpy', 'yaml', 'tqdm'} or m.startswith("
        "('offsetlab.backups', 'offsetlab.lab', 'offsetlab.brokers', 'offsetlab.cli')))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "", f"offsetlab.bus pulled in: {out.stdout.strip()}"
