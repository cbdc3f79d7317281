"""offsetlab.bus: the event-bus adapter the seed never finished, on kafka-python or
confluent-kafka.

Extractable: it imports the standard library and, lazily, the client library of the
transport it runs on (a test checks it; the in-memory bus needs no client at all).

* Events and their envelope: :class:`Event`, :class:`EventRegistry`; aggregates that keep an
  event until the broker acknowledged it: :class:`AggregateRoot`, :func:`publish_for_aggregate`.
* One interface (:class:`EventBus`, :class:`Subscription`), two buses: :class:`InMemoryBus`
  and :class:`KafkaBus`; one subscription core (:mod:`offsetlab.bus.core`) carries out the
  verdicts on both; the Kafka bus and the consumer runner run on a *transport*
  (``KafkaBusConfig(client="kafka-python" | "confluent-kafka")``,
  :mod:`offsetlab.bus.transports`), each with its client's quirks in one ``compat`` module.
* Client-neutral types: :class:`TopicPartition` (equal to kafka-python's), records with
  kafka-python's ``ConsumerRecord`` attribute names.
* Handler outcomes :class:`Ok` / :class:`Retry` / :class:`Reject`; the subscription's
  *error classifier* (:class:`ErrorClassifier`) and *retry strategy* (:class:`InPlaceRetry`,
  :class:`MainTopicRetry`, :class:`RetryTopicRetry`, each ending in a dead-letter topic); the
  dependency :class:`CircuitBreaker`.
* The consumer runner (:class:`ConsumerRunner`): KafkaJS's ``run()`` shape on a thread that
  owns one group member, with a *crash policy* (:class:`CrashPolicy`) and typed lifecycle
  events.
* Errors: one root, :class:`BusError`; the tree is drawn in :mod:`offsetlab.bus.errors`.
* For tests: :mod:`offsetlab.bus.testing` (drivers that run a bus to quiet, readers of a
  topic, a group's committed offsets and a topic's end offsets) and
  :mod:`offsetlab.bus.deadline` (one deadline and wait helper).
"""

from __future__ import annotations

from typing import Any

from .aggregate import AggregateRoot, publish_for_aggregate
from .breaker import BreakerState, BreakerTransition, CircuitBreaker
from .classify import Classification, ErrorClassifier
from .config import CrashPolicy, RunnerConfig
from .errors import (
    AggregatePublishError,
    BusError,
    BusStateError,
    ConfigError,
    DependencyUnavailable,
    EnvelopeError,
    JoinFailed,
    JoinTimeout,
    MalformedEnvelope,
    MalformedHeaders,
    PublishError,
    RunnerError,
    RunnerStateError,
    StopTimeout,
    TransactionAborted,
    TransactionError,
    TransactionFenced,
    UnknownEventType,
)
from .events import Event, EventRegistry
from .idempotent import (
    Idempotent,
    IdempotentHandler,
    InMemoryProcessedStore,
    ProcessedStore,
    SqliteProcessedStore,
    idempotent,
    idempotent_in_transaction,
)
from .interface import (
    Activity,
    ActivityKind,
    EventBus,
    Subscription,
    SubscriptionSpec,
    SubscriptionState,
)
from .lifecycle import (
    Commit,
    Connect,
    Crash,
    Disconnect,
    GroupJoin,
    LifecycleEvent,
    LifecycleKind,
    Pause,
    Rebalance,
    Resume,
    RunnerState,
    Stop,
)
from .memory import InMemoryBus, ManualClock
from .outcomes import Ok, Outcome, Reject, Retry
from .retry import (
    Backoff,
    InPlaceRetry,
    MainTopicRetry,
    RetryStrategy,
    RetryTopicRetry,
    dead_letter_topic,
)
from .runner import BatchContext, ConsumerRunner, JoinHandle
from .transports import CLIENTS
from .types import TopicPartition

__all__ = [
    # events and aggregates
    "Event", "EventRegistry", "AggregateRoot", "publish_for_aggregate",
    # the interface and its buses
    "EventBus", "Subscription", "SubscriptionSpec", "SubscriptionState", "Activity", "ActivityKind",
    "InMemoryBus", "ManualClock", "KafkaBus", "KafkaBusConfig",
    # outcomes, classification, retries, breaker
    "Ok", "Retry", "Reject", "Outcome", "ErrorClassifier", "Classification",
    "Backoff", "RetryStrategy", "InPlaceRetry", "MainTopicRetry", "RetryTopicRetry", "dead_letter_topic",
    "CircuitBreaker", "BreakerState", "BreakerTransition",
    # the consumer runner
    "ConsumerRunner", "RunnerConfig", "CrashPolicy", "JoinHandle", "BatchContext",
    "RunnerState", "TopicPartition", "CLIENTS", "LifecycleKind", "LifecycleEvent", "Connect", "GroupJoin", "Rebalance", "Pause",
    "Resume", "Commit", "Stop", "Crash", "Disconnect",
    # errors
    "BusError", "ConfigError", "RunnerError", "JoinFailed", "JoinTimeout", "RunnerStateError",
    "StopTimeout", "EnvelopeError", "MalformedEnvelope", "UnknownEventType", "MalformedHeaders",
    "PublishError", "AggregatePublishError", "BusStateError", "DependencyUnavailable",
    "TransactionError", "TransactionAborted", "TransactionFenced",
    # idempotent handlers (effects outside Kafka)
    "idempotent", "idempotent_in_transaction", "Idempotent", "IdempotentHandler",
    "ProcessedStore", "InMemoryProcessedStore", "SqliteProcessedStore",
]


def __getattr__(name: str) -> Any:
    # The Kafka bus is imported on first use (it pulls in the producer and admin clients).
    if name in ("KafkaBus", "KafkaBusConfig"):
        from . import kafka_bus

        return getattr(kafka_bus, name)
    raise AttributeError(f"module 'offsetlab.bus' has no attribute {name!r}")
