"""The event bus interface: one shape, two implementations (in-memory and Kafka).

.. code-block:: python

    bus.publish(event)                      # blocks until acknowledged, or PublishError
    bus.publish_for_aggregate(aggregate)    # in order; each cleared only once acknowledged
    sub = bus.subscribe(BackupRequestAccepted, handler, group="backups",
                        retry=MainTopicRetry(max_retries=5),
                        classifier=ErrorClassifier(), depends_on=(backup_job_breaker,))
    sub.run(timeout=30)                     # start, return once the group join completed
    ...
    sub.stop(); bus.close()

Three words, three objects, never mixed: the *crash policy* belongs to the consumer runner
(restart or stop a crashed consumer); the *error classifier* (``classify.py``) belongs to a
subscription and says retriable or fatal; the *retry strategy* (``retry.py``) belongs to a
subscription and says what a retry does.

A handler takes the decoded event and returns an :mod:`~offsetlab.bus.outcomes` value (or
``None`` for ok) or raises. Dependencies are bound in by the composition root (closures or
``functools.partial``), as in cosmicpython.

Both buses report what they do as :class:`Activity` records to listeners (and the in-memory
bus keeps them in a list), so a notebook can draw one timeline for either.

:func:`process_record` is the per-record rule book both buses follow (skip another group's
retry copy, wait for a not-before time, hold while a dependency's breaker is open, decode,
filter by event type, call the handler, :func:`~offsetlab.bus.retry.decide`); the buses
only carry out its :class:`Verdict` (commit, seek, pause, produce).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, Self

from offsetlab.bus.aggregate import AggregateRoot, publish_for_aggregate
from offsetlab.bus.breaker import BreakerState, CircuitBreaker
from offsetlab.bus.classify import ErrorClassifier
from offsetlab.bus.errors import ConfigError, EnvelopeError
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.headers import delivery_of
from offsetlab.bus.outcomes import OK, Outcome, as_outcome
from offsetlab.bus.retry import (
    Decision,
    InPlaceRetry,
    MainTopicRetry,
    RetryStrategy,
    RetryTopicRetry,
    decide,
    settled,
)

__all__ = [
    "Handler",
    "Receipt",
    "SubscriptionSpec",
    "SubscriptionState",
    "Subscription",
    "EventBus",
    "Activity",
    "ActivityKind",
    "ActivityListener",
    "DeliveredRecord",
    "Verdict",
    "VerdictKind",
    "process_record",
]

Handler = Callable[[Event], Outcome | None]


@dataclass(frozen=True)
class Receipt:
    """Where an acknowledged record was written."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, kw_only=True)
class SubscriptionSpec:
    """What a subscription consumes, who handles it, and how failures are treated.

    ``source`` is an event class (its topic; records of other event types on that topic
    are skipped) or a topic name (every event on it). ``topic`` is the main topic consumed;
    the bus fills it in from its registry (which may add a prefix); left empty it is the
    class's ``topic`` or the name given. ``depends_on`` breakers pause the subscription's
    partitions while any of them is open.
    """

    source: type[Event] | str
    handler: Handler
    group: str
    retry: RetryStrategy = field(default_factory=MainTopicRetry)
    classifier: ErrorClassifier = field(default_factory=ErrorClassifier)
    depends_on: tuple[CircuitBreaker, ...] = ()
    name: str = ""
    topic: str = ""
    _event_type: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.source, str):
            if not self.source:
                raise ConfigError("subscribe(source=''): give an event class or a topic name")
        elif not (isinstance(self.source, type) and issubclass(self.source, Event)):
            raise ConfigError(
                f"subscribe(source={self.source!r}): give an Event subclass or a topic name"
            )
        elif not getattr(self.source, "topic", None):
            raise ConfigError(f"subscribe({self.source.__name__}): the class has no `topic`")
        if not callable(self.handler):
            raise ConfigError(f"subscribe(handler={self.handler!r}): the handler must be callable")
        if not isinstance(self.group, str) or not self.group:
            raise ConfigError("subscribe(group=...): a non-empty consumer group id is required")
        if not isinstance(self.retry, InPlaceRetry | MainTopicRetry | RetryTopicRetry):
            raise ConfigError(
                f"subscribe(retry={self.retry!r}): use InPlaceRetry, MainTopicRetry or "
                "RetryTopicRetry"
            )
        if not isinstance(self.classifier, ErrorClassifier):
            raise ConfigError(f"subscribe(classifier={self.classifier!r}): use an ErrorClassifier")
        if not all(isinstance(b, CircuitBreaker) for b in self.depends_on):
            raise ConfigError("subscribe(depends_on=...): give a tuple of CircuitBreaker objects")
        if not self.topic:
            topic = self.source if isinstance(self.source, str) else self.source.topic
            object.__setattr__(self, "topic", topic)
        if not self.name:
            handler_name = getattr(self.handler, "__qualname__", type(self.handler).__name__)
            object.__setattr__(self, "name", f"{self.group}:{handler_name}")
        # read per record by process_record: computed once
        object.__setattr__(self, "_event_type",
                           None if isinstance(self.source, str) else self.source.event_type)

    @property
    def event_type(self) -> str | None:
        """The one event type handled, or ``None`` for all on the topic."""
        return self._event_type

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic the subscription consumes (the main one and its retry topic)."""
        if isinstance(self.retry, RetryTopicRetry):
            return (self.topic, self.retry.retry_topic(self.topic))
        return (self.topic,)

    def accepts(self, event: Event) -> bool:
        return self.event_type is None or event.event_type == self.event_type


class SubscriptionState(StrEnum):
    CREATED = "created"
    """Made by ``subscribe``; not consuming yet."""
    RUNNING = "running"
    """Started: member of its group, consuming."""
    STOPPED = "stopped"
    """Left its group; cannot be started again (subscribe anew)."""


class Subscription(abc.ABC):
    """A handler consuming a topic in a consumer group, with its failure policies."""

    spec: SubscriptionSpec

    @property
    @abc.abstractmethod
    def state(self) -> SubscriptionState: ...

    @abc.abstractmethod
    def start(self) -> Any:
        """Begin consuming and return at once (the group join completes in the background).

        The Kafka bus returns the runner's ``JoinHandle``; the in-memory bus joins at once
        and returns ``None``.
        """

    @abc.abstractmethod
    def run(self, timeout: float | None = None) -> Any:
        """Start if needed and return once the group join completed; raise if it failed.

        The Kafka bus returns the runner's ``GroupJoin`` event (``JoinFailed`` /
        ``JoinTimeout`` on failure); the in-memory bus returns ``None``.
        """

    @abc.abstractmethod
    def stop(self, timeout: float | None = None) -> None:
        """Commit what is settled, leave the group, stop; idempotent."""


class ActivityKind(StrEnum):
    """What a bus reports on its timeline."""

    PUBLISHED = "published"
    PUBLISH_FAILED = "publish_failed"
    JOINED = "joined"
    REBALANCED = "rebalanced"
    LEFT = "left"
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    SETTLED = "settled"
    SEEK_BACK = "seek_back"
    REPRODUCED = "reproduced"
    DEAD_LETTERED = "dead_lettered"
    WAITING = "waiting"
    PAUSED = "paused"
    RESUMED = "resumed"
    BREAKER = "breaker"


@dataclass(frozen=True, kw_only=True)
class Activity:
    """One thing a bus did, flat enough to become a DataFrame row."""

    kind: ActivityKind
    at: float
    subscription: str | None = None
    group: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    event_type: str | None = None
    event_id: str | None = None
    attempt: int | None = None
    target_topic: str | None = None
    detail: str = ""


ActivityListener = Callable[[Activity], None]


class EventBus(abc.ABC):
    """Publish events and subscribe handlers; see the module docstring."""

    registry: EventRegistry

    @abc.abstractmethod
    def publish(self, event: Event) -> Receipt:
        """Publish one event; return once the broker acknowledged it, else ``PublishError``."""

    @abc.abstractmethod
    def publish_raw(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> Receipt:
        """Publish bytes as they are (tests use it for poison messages)."""

    def publish_for_aggregate(self, aggregate: AggregateRoot) -> list[Event]:
        """Publish the aggregate's pending events in order (see ``aggregate.py``)."""
        return publish_for_aggregate(aggregate, self.publish)

    def subscribe(
        self,
        source: type[Event] | str,
        handler: Handler,
        *,
        group: str,
        retry: RetryStrategy | None = None,
        classifier: ErrorClassifier | None = None,
        depends_on: Sequence[CircuitBreaker] = (),
        name: str = "",
    ) -> Subscription:
        """Make (not start) a subscription; defaults: ``MainTopicRetry()``, ``ErrorClassifier()``."""
        is_event_class = isinstance(source, type) and issubclass(source, Event)
        topic = self.registry.topic_for(source) if is_event_class else ""  # type: ignore[arg-type]
        spec = SubscriptionSpec(
            topic=topic,
            source=source,
            handler=handler,
            group=group,
            retry=retry if retry is not None else MainTopicRetry(),
            classifier=classifier if classifier is not None else ErrorClassifier(),
            depends_on=tuple(depends_on),
            name=name,
        )
        return self._subscribe(spec)

    @abc.abstractmethod
    def _subscribe(self, spec: SubscriptionSpec) -> Subscription: ...

    @abc.abstractmethod
    def add_listener(self, listener: ActivityListener) -> None:
        """Report every :class:`Activity` to ``listener`` (called on the bus's threads)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop every subscription and release clients; idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# -- the per-record rule book ----------------------------------------------------------


class DeliveredRecord(Protocol):
    """What :func:`process_record` reads from a record: the slice of
    :class:`~offsetlab.bus.types.Record` the rules need (kafka-python's ``ConsumerRecord``,
    the confluent-kafka transport's ``ConsumedRecord`` and the in-memory bus's
    ``StoredRecord`` all fit)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any: ...  # a sequence of (str, bytes | None)


class VerdictKind(StrEnum):
    """What the bus must do with a consumed record."""

    SKIP = "skip"
    """Not for this subscription (another group's retry copy, another event type):
    commit offset + 1 without calling the handler."""
    WAIT = "wait"
    """Its not-before time is in the future: leave the position on it, pause the partition
    until ``Verdict.not_before``, keep polling."""
    HOLD = "hold"
    """A breaker the subscription depends on is open: leave the position on it (seek back
    if it was fetched), pause the partition, resume when the breaker half-opens."""
    DECIDED = "decided"
    """The handler ran (or the record could not be decoded): carry out ``Verdict.decision``."""


class Verdict(NamedTuple):
    """What the rule book decided for one record (a named tuple: one is made per record)."""

    kind: VerdictKind
    attempt: int = 1
    event: Event | None = None
    decision: Decision | None = None
    not_before: float | None = None
    detail: str = ""


_SKIP_OTHER_GROUP = Verdict(kind=VerdictKind.SKIP, detail="retry copy of another consumer group")


def process_record(
    spec: SubscriptionSpec,
    registry: EventRegistry,
    record: DeliveredRecord,
    *,
    now: Callable[[], float],
    group: str | None = None,
    attempt_override: int | None = None,
    on_delivery: Callable[[Event | None, int], None] | None = None,
) -> Verdict:
    """Apply the shared rules to one consumed record; calls the handler at most once.

    ``group`` defaults to ``spec.group``; ``attempt_override`` is the in-place retry
    count the bus keeps for a record it sought back to (in-place retries write no header);
    ``on_delivery(event_or_None, attempt)`` is called just before the handler runs (or
    before an undecodable record is decided), for timelines. ``now`` is called after the
    handler returns, so backoff and not-before times start when the attempt ended.
    """
    group = group or spec.group
    delivery = delivery_of(record.headers, group, record.topic)
    if not delivery.for_group:
        return _SKIP_OTHER_GROUP
    attempt, origin, not_before = delivery.attempt, delivery.origin, delivery.not_before
    header_error = delivery.error
    if not_before is not None and not_before > now():
        return Verdict(kind=VerdictKind.WAIT, attempt=attempt, not_before=not_before,
                       detail=f"not before +{not_before - now():.3f}s: partition paused")
    if spec.depends_on and any(b.state is BreakerState.OPEN for b in spec.depends_on):
        names = ", ".join(b.name for b in spec.depends_on if b.state is BreakerState.OPEN)
        return Verdict(kind=VerdictKind.HOLD, attempt=attempt, detail=f"breaker open: {names}")
    if attempt_override is not None:
        attempt = attempt_override
    result: Outcome | BaseException
    event: Event | None = None
    try:
        if header_error is not None:
            raise header_error
        event = registry.decode(record.value)
    except EnvelopeError as exc:
        result = exc
    else:
        wanted = spec.event_type
        if wanted is not None and event.event_type != wanted:
            return Verdict(kind=VerdictKind.SKIP, event=event,
                           detail=f"event type {event.event_type} not subscribed")
    if on_delivery is not None:
        on_delivery(event, attempt)
    if event is None:
        return Verdict(kind=VerdictKind.DECIDED, attempt=attempt, event=None, decision=decide(
            spec.retry, attempt=attempt, result=result, classifier=spec.classifier,
            topic=origin, now=now()))
    try:
        returned = spec.handler(event)
    except Exception as exc:  # classified by the subscription's error classifier
        return outcome_verdict(spec, event, attempt, origin, None, exc, now)
    return outcome_verdict(spec, event, attempt, origin, returned, None, now)


def outcome_verdict(spec: SubscriptionSpec, event: Event, attempt: int, origin: str,
                    returned: object, raised: Exception | None,
                    now: Callable[[], float]) -> Verdict:
    """The verdict after the handler ran on delivery ``attempt`` of ``event`` (first
    consumed from ``origin``): it returned ``returned`` or raised ``raised``. The happy path
    (``None``/``OK``) makes no decision: it is the shared settle decision."""
    result: Outcome | BaseException
    if raised is not None:
        result = raised
    elif returned is None or returned is OK:
        return Verdict(VerdictKind.DECIDED, attempt, event, settled(attempt))
    else:
        try:
            result = as_outcome(returned)
        except TypeError as exc:
            result = exc
    decision = decide(spec.retry, attempt=attempt, result=result, classifier=spec.classifier,
                      topic=origin, now=now())
    return Verdict(kind=VerdictKind.DECIDED, attempt=attempt, event=event, decision=decision)
