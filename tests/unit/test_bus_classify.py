"""The error classifier and handler outcomes."""

from __future__ import annotations

import json

import pytest
from kafka.errors import (
    IllegalArgumentError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NotLeaderForPartitionError,
)
from offsetlab.bus.classify import Classification, ErrorClassifier
from offsetlab.bus.errors import (
    ConfigError,
    DependencyUnavailable,
    JoinTimeout,
    MalformedEnvelope,
    UnknownEventType,
)
from offsetlab.bus.outcomes import OK, Ok, Reject, Retry, as_outcome

R, F = Classification.RETRIABLE, Classification.FATAL


def _json_error() -> Exception:
    try:
        json.loads("{")
    except json.JSONDecodeError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(("exc", "expected"), [
    (TimeoutError("t"), R),
    (ConnectionError("c"), R),
    (ConnectionRefusedError("c"), R),
    (DependencyUnavailable("open"), R),
    (JoinTimeout("join"), R),
    (KafkaTimeoutError(), R),
    (KafkaConnectionError(), R),
    (NotLeaderForPartitionError(), R),
    (MalformedEnvelope("m"), F),
    (UnknownEventType("u"), F),
    (ValueError("v"), F),
    (TypeError("t"), F),
    (KeyError("k"), F),
    (_json_error(), F),
    (IllegalArgumentError(), F),
    (ConfigError("bad"), F),
    (RuntimeError("who knows"), R),  # unknown -> retriable by default (bounded by max_retries)
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_default_classification(exc: BaseException, expected: Classification) -> None:
    assert ErrorClassifier().classify(exc) is expected


def test_unknown_can_be_fatal() -> None:
    assert ErrorClassifier(unknown=F).classify(RuntimeError()) is F
    assert ErrorClassifier(unknown=F).classify(TimeoutError()) is R


def test_with_retriable_moves_a_class_and_keeps_more_specific_entries() -> None:
    base = ErrorClassifier()
    lenient = base.with_retriable(ValueError)
    assert lenient.classify(ValueError()) is R
    assert lenient.classify(MalformedEnvelope("x")) is F  # EnvelopeError entry is more specific
    assert base.classify(ValueError()) is F  # the original is unchanged


def test_most_specific_class_wins() -> None:
    c = ErrorClassifier().with_retriable(UnicodeDecodeError)
    assert c.classify(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")) is R
    assert c.classify(ValueError()) is F
    strict = ErrorClassifier().with_fatal(ConnectionRefusedError)
    assert strict.classify(ConnectionRefusedError()) is F
    assert strict.classify(ConnectionResetError()) is R


def test_explicit_entry_beats_kafka_retriable_flag() -> None:
    c = ErrorClassifier().with_fatal(KafkaTimeoutError)
    assert c.classify(KafkaTimeoutError()) is F
    assert c.classify(KafkaConnectionError()) is R


def test_user_exception_types() -> None:
    class PaymentGatewayDown(Exception):
        pass

    class CardDeclined(Exception):
        pass

    c = ErrorClassifier(unknown=F).with_retriable(PaymentGatewayDown)
    assert c.is_retriable(PaymentGatewayDown()) and not c.is_retriable(CardDeclined())


def test_configuration_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match="both retriable and fatal"):
        ErrorClassifier(retriable=(ValueError,), fatal=(ValueError,))
    with pytest.raises(ConfigError, match="pass exception classes"):
        ErrorClassifier().with_fatal("ValueError")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Classification.RETRIABLE"):
        ErrorClassifier(unknown="retriable-ish")  # type: ignore[arg-type]


def test_outcomes() -> None:
    assert as_outcome(None) is OK and Ok() == OK
    assert as_outcome(Retry(reason="later", delay_s=2.0)).delay_s == 2.0  # type: ignore[union-attr]
    assert as_outcome(Reject(reason="bad")) == Reject(reason="bad")
    with pytest.raises(TypeError, match="handler returned True"):
        as_outcome(True)
    with pytest.raises(ConfigError, match="delay_s"):
        Retry(reason="x", delay_s=-1)
    with pytest.raises(ConfigError, match="delay_s"):
        Retry(reason="x", delay_s=float("nan"))
