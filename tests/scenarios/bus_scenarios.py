"""Generic bus scenarios: delivery, retries per strategy, dead letters, classification.

Each ``scenario_*`` takes a driver (``drivers.py``) and asserts; none knows which bus it
runs on. Strategies are passed in; :func:`fast_strategies` gives the three with short
backoffs so a real-time run stays quick.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable

from offsetlab.bus.classify import ErrorClassifier
from offsetlab.bus.events import EVENT_TYPE_HEADER, Event
from offsetlab.bus.headers import EXCEPTION_FQCN, attempt_of, parse_provenance
from offsetlab.bus.interface import Subscription
from offsetlab.bus.outcomes import Outcome, Reject
from offsetlab.bus.retry import (
    Backoff,
    InPlaceRetry,
    MainTopicRetry,
    RetryStrategy,
    RetryTopicRetry,
    dead_letter_topic,
)

from scenarios.drivers import Driver
from scenarios.events import Ping, Pong

TIMEOUT_S = 60.0


def fast_strategies(max_retries: int = 2) -> dict[str, RetryStrategy]:
    """The three strategies, each giving up after ``max_retries`` retries, short backoffs."""
    backoff = Backoff(initial_s=0.05, multiplier=2.0, max_s=0.2)
    return {
        "in_place": InPlaceRetry(max_retries=max_retries, backoff=backoff),
        "main_topic": MainTopicRetry(max_retries=max_retries),
        "retry_topic": RetryTopicRetry(max_retries=max_retries, backoff=backoff),
    }


class Recorder:
    """A handler that records deliveries by ``n`` and answers from a per-``n`` script."""

    def __init__(self, script: Callable[[int, int], Outcome | None] | None = None) -> None:
        self.seen: list[int] = []
        self.keys: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._script = script

    def __call__(self, event: Event) -> Outcome | None:
        assert isinstance(event, Ping | Pong)
        with self._lock:
            self.seen.append(event.n)
            if isinstance(event, Ping):
                self.keys.append((event.k, event.n))
            count = self.seen.count(event.n)
        return self._script(event.n, count) if self._script else None

    def deliveries(self) -> Counter[int]:
        with self._lock:
            return Counter(self.seen)


def _subscribe(driver: Driver, handler: Recorder, strategy: RetryStrategy, group: str = "g",
               classifier: ErrorClassifier | None = None,
               source: type[Event] | str = Ping) -> Subscription:
    sub = driver.bus.subscribe(source, handler, group=driver.name(group), retry=strategy,
                               classifier=classifier)
    sub.run(timeout=TIMEOUT_S)
    return sub


def _topic(driver: Driver) -> str:
    return driver.bus.registry.topic_for(Ping)


def _dlt(driver: Driver, strategy: RetryStrategy) -> str:
    return dead_letter_topic(_topic(driver), strategy.dead_letter_suffix)


def scenario_delivers_each_once_in_key_order(driver: Driver, strategy: RetryStrategy) -> None:
    """Six events over two keys: each handled once, in publish order per key."""
    handler = Recorder()
    sub = _subscribe(driver, handler, strategy)
    for n in range(6):
        driver.bus.publish(Ping(n=n, k=f"key-{n % 2}"))
    driver.wait_until(lambda: len(handler.seen) >= 6, timeout_s=TIMEOUT_S, what="6 deliveries")
    driver.idle(0.2)
    assert sorted(handler.seen) == list(range(6))
    for key in ("key-0", "key-1"):
        ns = [n for k, n in handler.keys if k == key]
        assert ns == sorted(ns), f"{key} out of order: {ns}"
    assert driver.records(_dlt(driver, strategy)) == []
    sub.stop()


def scenario_retry_until_success(driver: Driver, strategy: RetryStrategy) -> None:
    """n=1 fails twice with ConnectionError, then succeeds; nothing is dead-lettered."""

    def script(n: int, count: int) -> None:
        if n == 1 and count <= 2:
            raise ConnectionError("dependency unreachable")

    handler = Recorder(script)
    sub = _subscribe(driver, handler, strategy)
    for n in range(3):
        driver.bus.publish(Ping(n=n, k=f"key-{n}"))
    driver.wait_until(lambda: handler.deliveries()[1] >= 3, timeout_s=TIMEOUT_S,
                      what="three deliveries of n=1")
    driver.idle(0.3)
    assert handler.deliveries() == Counter({0: 1, 1: 3, 2: 1})
    assert driver.records(_dlt(driver, strategy)) == []
    copies = _retry_copies(driver, strategy)
    if isinstance(strategy, InPlaceRetry):
        assert copies == []
    else:
        assert [attempt_of(r.headers) for r in copies] == [2, 3]
        for r in copies:
            prov = parse_provenance(r.headers)
            assert prov.original_topic == _topic(driver)
            assert prov.exception_fqcn == "builtins.ConnectionError"
            assert prov.reason is not None and prov.reason.startswith("retriable:")
            if isinstance(strategy, RetryTopicRetry):
                assert prov.not_before_ms is not None
    sub.stop()


def _retry_copies(driver: Driver, strategy: RetryStrategy) -> list:
    if isinstance(strategy, RetryTopicRetry):
        return list(driver.records(strategy.retry_topic(_topic(driver))))
    return [r for r in driver.records(_topic(driver)) if attempt_of(r.headers) > 1]


def scenario_exhausted_retries_dead_letter(driver: Driver, strategy: RetryStrategy) -> None:
    """n=7 always times out: max_retries + 1 deliveries, then one dead letter with provenance."""

    def script(n: int, count: int) -> None:
        if n == 7:
            raise TimeoutError("dependency slow")

    handler = Recorder(script)
    sub = _subscribe(driver, handler, strategy)
    receipt = driver.bus.publish(Ping(n=7, k="poisoned"))
    driver.bus.publish(Ping(n=8, k="healthy"))
    dlt = _dlt(driver, strategy)
    driver.wait_until(lambda: len(driver.records(dlt)) >= 1, timeout_s=TIMEOUT_S,
                      what=f"a dead letter on {dlt}")
    driver.idle(0.3)
    assert handler.deliveries()[7] == strategy.max_retries + 1
    assert handler.deliveries()[8] == 1
    [dead] = driver.records(dlt)
    original = next(r for r in driver.records(_topic(driver)) if r.offset == receipt.offset
                    and r.partition == receipt.partition)
    assert dead.value == original.value and dead.key == original.key
    prov = parse_provenance(dead.headers)
    assert prov.original_topic == receipt.topic
    assert prov.original_partition == receipt.partition
    assert prov.original_offset == receipt.offset
    assert prov.original_consumer_group == driver.name("g")
    assert prov.exception_fqcn == "builtins.TimeoutError"
    assert prov.exception_message == "dependency slow"
    assert prov.attempt == strategy.max_retries + 1
    assert prov.reason is not None and prov.reason.startswith("retries exhausted")
    names = [k for k, _ in dead.headers]
    assert names.count(EXCEPTION_FQCN) == 1, "exception headers must be replaced, not stacked"
    assert EVENT_TYPE_HEADER in names, "the record's own headers are kept"
    sub.stop()


def scenario_fatal_and_reject_skip_retries(driver: Driver, strategy: RetryStrategy) -> None:
    """A ValueError and a Reject go to the dead-letter topic after one delivery each."""

    def script(n: int, count: int) -> Outcome | None:
        if n == 1:
            raise ValueError("amount must be positive")
        if n == 2:
            return Reject(reason="duplicate request")
        return None

    handler = Recorder(script)
    sub = _subscribe(driver, handler, strategy)
    for n in (1, 2, 3):
        driver.bus.publish(Ping(n=n, k=f"key-{n}"))
    dlt = _dlt(driver, strategy)
    driver.wait_until(lambda: len(driver.records(dlt)) >= 2, timeout_s=TIMEOUT_S,
                      what="two dead letters")
    driver.idle(0.3)
    assert handler.deliveries() == Counter({1: 1, 2: 1, 3: 1})
    by_reason = {parse_provenance(r.headers).reason: parse_provenance(r.headers)
                 for r in driver.records(dlt)}
    fatal = next(p for r, p in by_reason.items() if r and r.startswith("fatal:"))
    assert fatal.exception_fqcn == "builtins.ValueError" and fatal.attempt == 1
    rejected = next(p for r, p in by_reason.items() if r and r.startswith("rejected:"))
    assert rejected.reason == "rejected: duplicate request"
    assert rejected.exception_fqcn is None and rejected.attempt == 1
    sub.stop()


def scenario_poison_bytes_dead_letter(driver: Driver, strategy: RetryStrategy) -> None:
    """Bytes that are not an envelope, or of an unknown type, are dead-lettered at once."""
    handler = Recorder()
    sub = _subscribe(driver, handler, strategy)
    topic = _topic(driver)
    driver.bus.publish_raw(topic, b"\xff not json at all", key=b"poison")
    unknown = {"event_type": "NoSuchEvent", "event_id": "0c6c8a4e-7f7c-4f0e-9b52-3f1d2f6c9e01",
               "occurred_at": "2026-01-01T00:00:00+00:00", "schema_version": 1, "payload": {}}
    driver.bus.publish_raw(topic, json.dumps(unknown).encode(), key=b"unknown")
    driver.bus.publish(Ping(n=1, k="fine"))
    dlt = _dlt(driver, strategy)
    driver.wait_until(lambda: len(driver.records(dlt)) >= 2 and handler.seen == [1],
                      timeout_s=TIMEOUT_S, what="two dead letters and one delivery")
    fqcns = sorted(parse_provenance(r.headers).exception_fqcn or "" for r in driver.records(dlt))
    assert fqcns == ["offsetlab.bus.errors.MalformedEnvelope",
                     "offsetlab.bus.errors.UnknownEventType"]
    assert all(parse_provenance(r.headers).attempt == 1 for r in driver.records(dlt))
    sub.stop()


def scenario_classifier_is_per_subscription(driver: Driver, strategy: RetryStrategy) -> None:
    """``with_retriable(ValueError)`` retries a ValueError; ``with_fatal(ConnectionError)``
    dead-letters a ConnectionError at once."""

    def script(n: int, count: int) -> None:
        if n == 1:
            raise ValueError("the dependency said 'try later' in a ValueError")
        if n == 2:
            raise ConnectionError("refused")

    retrying = Recorder(script)
    strict = Recorder(script)
    sub_a = _subscribe(driver, retrying, strategy, group="lenient",
                       classifier=ErrorClassifier().with_retriable(ValueError))
    sub_b = _subscribe(driver, strict, strategy, group="strict",
                       classifier=ErrorClassifier().with_fatal(ConnectionError))
    driver.bus.publish(Ping(n=1, k="a"))
    driver.bus.publish(Ping(n=2, k="b"))
    dlt = _dlt(driver, strategy)
    expected_dead = 2 + 2  # each group dead-letters both, after different numbers of tries
    driver.wait_until(lambda: len(driver.records(dlt)) >= expected_dead, timeout_s=TIMEOUT_S,
                      what=f"{expected_dead} dead letters")
    driver.idle(0.3)
    full = strategy.max_retries + 1
    assert retrying.deliveries() == Counter({1: full, 2: full})
    assert strict.deliveries() == Counter({1: 1, 2: 1})
    sub_a.stop()
    sub_b.stop()


def scenario_retry_copies_belong_to_their_group(driver: Driver) -> None:
    """Main-topic retry copies are handled only by the group that failed the original."""
    strategy = MainTopicRetry(max_retries=2)

    def fail_once(n: int, count: int) -> None:
        if count == 1:
            raise ConnectionError("first try fails")

    failing = Recorder(fail_once)
    other = Recorder()
    sub_a = _subscribe(driver, failing, strategy, group="a")
    sub_b = _subscribe(driver, other, strategy, group="b")
    driver.bus.publish(Ping(n=1, k="x"))
    driver.wait_until(lambda: failing.deliveries()[1] >= 2 and other.deliveries()[1] >= 1,
                      timeout_s=TIMEOUT_S, what="a retried once, b delivered once")
    # b must have read past the copy before we conclude it skipped it
    driver.wait_until(lambda: len(driver.records(_topic(driver))) == 2, timeout_s=TIMEOUT_S,
                      what="the copy on the main topic")
    driver.idle(0.5)
    assert failing.deliveries() == Counter({1: 2})
    assert other.deliveries() == Counter({1: 1})
    sub_a.stop()
    sub_b.stop()


def scenario_subscribe_by_type_or_topic(driver: Driver, strategy: RetryStrategy) -> None:
    """Subscribing to Ping skips Pong on the same topic; subscribing to the topic gets both."""
    pings = Recorder()
    everything = Recorder()
    sub_a = _subscribe(driver, pings, strategy, group="pings-only")
    sub_b = _subscribe(driver, everything, strategy, group="whole-topic",
                       source=_topic(driver))
    driver.bus.publish(Ping(n=1, k="x"))
    driver.bus.publish(Pong(n=2))
    driver.bus.publish(Ping(n=3, k="x"))
    driver.wait_until(lambda: len(everything.seen) >= 3 and len(pings.seen) >= 2,
                      timeout_s=TIMEOUT_S, what="3 + 2 deliveries")
    driver.idle(0.2)
    assert sorted(pings.seen) == [1, 3]
    assert sorted(everything.seen) == [1, 2, 3]
    sub_a.stop()
    sub_b.stop()


ALL_STRATEGY_SCENARIOS = (
    scenario_delivers_each_once_in_key_order,
    scenario_retry_until_success,
    scenario_exhausted_retries_dead_letter,
    scenario_fatal_and_reject_skip_retries,
    scenario_poison_bytes_dead_letter,
    scenario_classifier_is_per_subscription,
    scenario_subscribe_by_type_or_topic,
)
