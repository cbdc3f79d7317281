"""Retry strategies (what a retry *does*) and the pure decision of what to do next.

Three words kept apart:

- the runner's **crash policy** restarts or stops a consumer that crashed (``config.py``);
- a subscription's **error classifier** says whether an exception is retriable or fatal
  (``classify.py``);
- a subscription's **retry strategy** (this module) says how a retriable failure is tried
  again, and when to give up.

Strategies, each a frozen policy object chosen per subscription:

- :class:`InPlaceRetry`: seek the partition back to the failed record and deliver it again
  after a backoff; while waiting the partition is paused and the consumer keeps polling.
  Order is kept; the partition is blocked meanwhile. (Spring's ``DefaultErrorHandler``.)
- :class:`MainTopicRetry`: produce the record again to its own topic with the attempt count
  in a header, then commit offset + 1 (the seed's choice). Other records of the partition go
  on; the retried record moves behind them. With a backoff, the copy carries a not-before
  time and the consumer pauses the partition when it meets it until it is due.
- :class:`RetryTopicRetry`: produce the record to ``<topic><retry_suffix>`` with provenance
  headers and a not-before time, commit offset + 1; the retry topic's consumer pauses that
  partition until the record is due, then processes it (a Spring ``@RetryableTopic`` with one
  tier).

All of them give up into the dead-letter topic ``<original topic><dead_letter_suffix>``
(``-dlt`` by default, Spring Kafka's naming) after the last attempt, and at once for a
:class:`~offsetlab.bus.outcomes.Reject` or a fatal exception.

Counting: ``attempt`` is 1 for the first delivery; ``max_retries`` counts retries after it,
so ``max_retries=5`` means up to 6 deliveries, then the dead-letter topic (the number the
seed used; its 5 were KafkaJS's own in-place consumer retries before a crash and restart,
not re-produces: E05's client section).

:func:`decide` is pure: (strategy, attempt, outcome or exception, classifier, topic, now)
-> :class:`Decision`. The in-memory bus and the Kafka bus both execute decisions; neither
re-implements the rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

from offsetlab.bus.classify import Classification, ErrorClassifier
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.outcomes import Ok, Outcome, Reject, Retry

__all__ = [
    "settled",
    "Backoff",
    "InPlaceRetry",
    "MainTopicRetry",
    "RetryTopicRetry",
    "RetryStrategy",
    "Action",
    "Decision",
    "decide",
    "dead_letter_topic",
    "DEFAULT_DEAD_LETTER_SUFFIX",
    "DEFAULT_RETRY_SUFFIX",
]

#: Spring Kafka's dead-letter suffix (``DeadLetterPublishingRecoverer``, ``@RetryableTopic``).
DEFAULT_DEAD_LETTER_SUFFIX = "-dlt"
#: Spring Kafka's retry-topic suffix (``@RetryableTopic`` with a single retry topic).
DEFAULT_RETRY_SUFFIX = "-retry"

_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def _check_suffix(owner: str, key: str, suffix: str) -> None:
    if not suffix or not set(suffix) <= _TOPIC_CHARS:
        raise ConfigError(
            f"{owner}.{key}={suffix!r}: must be non-empty and use only letters, digits, "
            "'.', '_' and '-' (Kafka topic characters)"
        )


def dead_letter_topic(topic: str, suffix: str = DEFAULT_DEAD_LETTER_SUFFIX) -> str:
    """The dead-letter topic of ``topic`` (``orders`` -> ``orders-dlt``)."""
    return f"{topic}{suffix}"


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Exponential backoff: ``initial_s * multiplier ** (retry - 1)``, capped at ``max_s``.

    Defaults follow KafkaJS's consumer retry (``kafka.consumer()``'s own ``retry``, not
    ``new Kafka()``'s): 300 ms, x2, cap 30 s (E05's client section measured its first gaps at
    about 0.3 s, doubling; the cap was not measured).
    """

    initial_s: float = 0.3
    multiplier: float = 2.0
    max_s: float = 30.0

    def __post_init__(self) -> None:
        for key in ("initial_s", "multiplier", "max_s"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"Backoff.{key}={value!r} must be a finite number >= 0")
        if self.multiplier < 1:
            raise ConfigError(
                f"Backoff.multiplier={self.multiplier!r} must be >= 1 (1 = constant delay)"
            )
        if self.max_s < self.initial_s:
            raise ConfigError(
                f"Backoff.max_s={self.max_s!r} is below initial_s={self.initial_s!r}; "
                "raise max_s or lower initial_s"
            )

    def delay_for(self, retry: int) -> float:
        """Delay before retry number ``retry`` (1 = the first retry)."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        exponent = min(retry - 1, 1000)  # avoid float overflow; the cap applies anyway
        return min(self.max_s, self.initial_s * self.multiplier**exponent)


def _check_max_retries(owner: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(
            f"{owner}.max_retries={value!r} must be an int >= 0 (retries after the first "
            "attempt; 5 means 6 deliveries)"
        )


@dataclass(frozen=True, kw_only=True)
class InPlaceRetry:
    """Seek back and deliver again after a backoff, pausing the partition meanwhile."""

    max_retries: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    dead_letter_suffix: str = DEFAULT_DEAD_LETTER_SUFFIX

    def __post_init__(self) -> None:
        _check_max_retries("InPlaceRetry", self.max_retries)
        _check_suffix("InPlaceRetry", "dead_letter_suffix", self.dead_letter_suffix)

    def retry_decision(self, *, attempt: int, delay_s: float, topic: str, now: float,
                       reason: str) -> Decision:
        return Decision(
            action=Action.SEEK_BACK, attempt=attempt + 1, reason=reason, delay_s=delay_s,
            not_before=now + delay_s, target_topic=topic,
        )


@dataclass(frozen=True, kw_only=True)
class MainTopicRetry:
    """Re-produce to the record's own topic with attempt + 1, then commit offset + 1.

    ``backoff=None`` (default, the seed's behaviour) re-produces for immediate redelivery;
    with a backoff the copy carries a not-before time.
    """

    max_retries: int = 5
    backoff: Backoff | None = None
    dead_letter_suffix: str = DEFAULT_DEAD_LETTER_SUFFIX

    def __post_init__(self) -> None:
        _check_max_retries("MainTopicRetry", self.max_retries)
        _check_suffix("MainTopicRetry", "dead_letter_suffix", self.dead_letter_suffix)

    def retry_decision(self, *, attempt: int, delay_s: float, topic: str, now: float,
                       reason: str) -> Decision:
        return Decision(
            action=Action.REPRODUCE, attempt=attempt + 1, reason=reason, delay_s=delay_s,
            not_before=now + delay_s if delay_s > 0 else None, target_topic=topic,
        )


@dataclass(frozen=True, kw_only=True)
class RetryTopicRetry:
    """Re-produce to ``<topic><retry_suffix>`` with a not-before time; commit offset + 1."""

    max_retries: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    retry_suffix: str = DEFAULT_RETRY_SUFFIX
    dead_letter_suffix: str = DEFAULT_DEAD_LETTER_SUFFIX

    def __post_init__(self) -> None:
        _check_max_retries("RetryTopicRetry", self.max_retries)
        _check_suffix("RetryTopicRetry", "retry_suffix", self.retry_suffix)
        _check_suffix("RetryTopicRetry", "dead_letter_suffix", self.dead_letter_suffix)
        if self.retry_suffix == self.dead_letter_suffix:
            raise ConfigError(
                "RetryTopicRetry.retry_suffix and dead_letter_suffix are both "
                f"{self.retry_suffix!r}; pick different suffixes"
            )

    def retry_topic(self, topic: str) -> str:
        """The retry topic of the *original* topic ``topic``."""
        return f"{topic}{self.retry_suffix}"

    def retry_decision(self, *, attempt: int, delay_s: float, topic: str, now: float,
                       reason: str) -> Decision:
        return Decision(
            action=Action.REPRODUCE, attempt=attempt + 1, reason=reason, delay_s=delay_s,
            not_before=now + delay_s, target_topic=self.retry_topic(topic),
        )


RetryStrategy = InPlaceRetry | MainTopicRetry | RetryTopicRetry


class Action(StrEnum):
    """What the bus does with a delivered record."""

    SETTLE = "settle"
    """Done (ok): commit offset + 1."""
    SEEK_BACK = "seek_back"
    """Retry in place: seek back to the record, pause the partition until ``not_before``."""
    REPRODUCE = "reproduce"
    """Produce a copy to ``target_topic`` with ``attempt`` (and ``not_before``), then settle."""
    DEAD_LETTER = "dead_letter"
    """Produce a copy to the dead-letter ``target_topic`` with provenance, then settle."""


@dataclass(frozen=True, kw_only=True)
class Decision:
    """One verdict on one delivery.

    ``attempt`` is the attempt number of the *next* delivery for retries and the number of
    the delivery that failed for dead letters; ``not_before`` is in the clock's seconds
    (epoch seconds for the buses); ``target_topic`` is where a copy goes (``None`` for
    settle; the original topic for a seek back).
    """

    action: Action
    attempt: int
    reason: str = ""
    delay_s: float = 0.0
    not_before: float | None = None
    target_topic: str | None = None
    classification: Classification | None = None
    error: BaseException | None = field(default=None, compare=False)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"


_SETTLED: dict[int, Decision] = {}


def settled(attempt: int) -> Decision:
    """The (shared, immutable) decision to settle delivery number ``attempt``."""
    decision = _SETTLED.get(attempt)
    if decision is None:
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        decision = Decision(action=Action.SETTLE, attempt=attempt)
        if len(_SETTLED) < 64:
            _SETTLED[attempt] = decision
    return decision


def decide(
    strategy: RetryStrategy,
    *,
    attempt: int,
    result: Outcome | BaseException,
    classifier: ErrorClassifier,
    topic: str,
    now: float,
) -> Decision:
    """What to do after delivery number ``attempt`` of a record from original ``topic``.

    ``result`` is the handler's outcome or the exception it raised. ``topic`` is the
    record's *original* topic (for a retry-topic record, the topic it first came from), so
    retry and dead-letter topics are named from it.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if isinstance(result, Ok):
        return settled(attempt)
    dlt = dead_letter_topic(topic, strategy.dead_letter_suffix)
    if isinstance(result, Reject):
        return Decision(action=Action.DEAD_LETTER, attempt=attempt, target_topic=dlt,
                        reason=f"rejected: {result.reason}")
    error: BaseException | None = None
    classification: Classification | None = None
    if isinstance(result, Retry):
        reason, delay_override = f"retry: {result.reason}", result.delay_s
    elif isinstance(result, BaseException):
        error = result
        classification = classifier.classify(result)
        reason, delay_override = f"{classification.value}: {_describe(result)}", None
        if classification is Classification.FATAL:
            return Decision(action=Action.DEAD_LETTER, attempt=attempt, target_topic=dlt,
                            reason=reason, classification=classification, error=error)
    else:
        raise TypeError(f"decide(result={result!r}): expected an Outcome or an exception")
    retries_done = attempt - 1
    if retries_done >= strategy.max_retries:
        return Decision(
            action=Action.DEAD_LETTER, attempt=attempt, target_topic=dlt,
            reason=f"retries exhausted ({strategy.max_retries} retries, {attempt} deliveries); "
                   f"last: {reason}",
            classification=classification, error=error,
        )
    if delay_override is not None:
        delay = delay_override
    elif strategy.backoff is not None:
        delay = strategy.backoff.delay_for(attempt)
    else:
        delay = 0.0
    decision = strategy.retry_decision(attempt=attempt, delay_s=delay, topic=topic, now=now,
                                       reason=reason)
    return replace(decision, classification=classification, error=error)
