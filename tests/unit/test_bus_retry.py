"""Retry strategies and the pure decide() verdicts."""

from __future__ import annotations

import pytest
from offsetlab.bus.classify import Classification, ErrorClassifier
from offsetlab.bus.errors import ConfigError, MalformedEnvelope
from offsetlab.bus.outcomes import OK, Reject, Retry
from offsetlab.bus.retry import (
    Action,
    Backoff,
    InPlaceRetry,
    MainTopicRetry,
    RetryStrategy,
    RetryTopicRetry,
    dead_letter_topic,
    decide,
)

C = ErrorClassifier()
NOW = 1000.0


def _decide(strategy: RetryStrategy, attempt: int, result, topic: str = "orders"):
    return decide(strategy, attempt=attempt, result=result, classifier=C, topic=topic, now=NOW)


def test_backoff_defaults_are_kafkajs_300ms_doubling_capped_at_30s() -> None:
    b = Backoff()
    assert [b.delay_for(n) for n in range(1, 9)] == [0.3, 0.6, 1.2, 2.4, 4.8, 9.6, 19.2, 30.0]
    assert b.delay_for(10_000) == 30.0
    assert Backoff(initial_s=1, multiplier=1, max_s=1).delay_for(7) == 1
    with pytest.raises(ValueError):
        b.delay_for(0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"initial_s": -1}, "initial_s"),
    ({"multiplier": 0.5}, "multiplier"),
    ({"initial_s": 5, "max_s": 1}, "below initial_s"),
    ({"max_s": float("inf")}, "max_s"),
])
def test_backoff_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Backoff(**kwargs)


@pytest.mark.parametrize("cls", [InPlaceRetry, MainTopicRetry, RetryTopicRetry])
def test_strategy_validation(cls) -> None:
    with pytest.raises(ConfigError, match="max_retries"):
        cls(max_retries=-1)
    with pytest.raises(ConfigError, match="max_retries"):
        cls(max_retries=True)
    with pytest.raises(ConfigError, match="dead_letter_suffix"):
        cls(dead_letter_suffix="/dlt")
    with pytest.raises(TypeError):
        cls(3)  # keyword-only


def test_retry_topic_suffixes_must_differ() -> None:
    with pytest.raises(ConfigError, match="different suffixes"):
        RetryTopicRetry(retry_suffix="-x", dead_letter_suffix="-x")


@pytest.mark.parametrize("strategy", [InPlaceRetry(), MainTopicRetry(), RetryTopicRetry()])
def test_ok_settles_and_reject_and_fatal_dead_letter_at_once(strategy: RetryStrategy) -> None:
    assert _decide(strategy, 1, OK).action is Action.SETTLE
    rejected = _decide(strategy, 1, Reject(reason="dup"))
    assert (rejected.action, rejected.target_topic, rejected.reason) == (
        Action.DEAD_LETTER, "orders-dlt", "rejected: dup")
    fatal = _decide(strategy, 1, MalformedEnvelope("garbage"))
    assert fatal.action is Action.DEAD_LETTER and fatal.classification is Classification.FATAL
    assert fatal.attempt == 1 and "offsetlab.bus.errors.MalformedEnvelope" in fatal.reason
    assert isinstance(fatal.error, MalformedEnvelope)


def test_in_place_seeks_back_with_backoff() -> None:
    d = _decide(InPlaceRetry(), 2, TimeoutError("slow"))
    assert d.action is Action.SEEK_BACK and d.target_topic == "orders"
    assert d.attempt == 3 and d.delay_s == pytest.approx(0.6)
    assert d.not_before == pytest.approx(NOW + 0.6)
    assert d.classification is Classification.RETRIABLE


def test_main_topic_reproduces_to_itself_immediately_by_default() -> None:
    d = _decide(MainTopicRetry(), 1, ConnectionError("down"))
    assert (d.action, d.target_topic, d.attempt, d.delay_s, d.not_before) == (
        Action.REPRODUCE, "orders", 2, 0.0, None)
    delayed = _decide(MainTopicRetry(backoff=Backoff(initial_s=2, max_s=10)), 1, Retry(reason="x"))
    assert delayed.not_before == pytest.approx(NOW + 2)


def test_retry_topic_is_named_from_the_original_topic() -> None:
    s = RetryTopicRetry()
    d = _decide(s, 3, Retry(reason="later"), topic="orders")
    assert (d.action, d.target_topic, d.attempt) == (Action.REPRODUCE, "orders-retry", 4)
    assert d.not_before == pytest.approx(NOW + 1.2) and d.reason == "retry: later"
    assert s.retry_topic("orders") == "orders-retry"
    exhausted = _decide(s, 6, Retry(reason="later"), topic="orders")
    assert exhausted.target_topic == "orders-dlt"  # not orders-retry-dlt


def test_retry_outcome_delay_overrides_backoff() -> None:
    d = _decide(InPlaceRetry(), 1, Retry(reason="rate limited", delay_s=7.5))
    assert d.delay_s == 7.5 and d.not_before == NOW + 7.5


@pytest.mark.parametrize("max_retries", [0, 1, 5])
@pytest.mark.parametrize("strategy_cls", [InPlaceRetry, MainTopicRetry, RetryTopicRetry])
def test_max_retries_counts_retries_after_the_first_attempt(strategy_cls, max_retries: int) -> None:
    """Walk the attempts as a bus would: the seed's 5 gives 6 deliveries, then the DLT."""
    strategy = strategy_cls(max_retries=max_retries)
    attempt, deliveries = 1, 0
    while True:
        deliveries += 1
        d = _decide(strategy, attempt, TimeoutError("slow"))
        if d.action is Action.DEAD_LETTER:
            break
        attempt = d.attempt
    assert deliveries == max_retries + 1
    assert d.attempt == max_retries + 1 and d.reason.startswith("retries exhausted")
    assert isinstance(d.error, TimeoutError)


def test_dead_letter_naming_and_custom_suffix() -> None:
    assert dead_letter_topic("orders") == "orders-dlt"
    d = _decide(InPlaceRetry(max_retries=0, dead_letter_suffix=".DLT"), 1, TimeoutError())
    assert d.target_topic == "orders.DLT"


def test_decide_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        _decide(InPlaceRetry(), 0, OK)
    with pytest.raises(TypeError):
        _decide(InPlaceRetry(), 1, "ok")  # type: ignore[arg-type]
