"""The Kafka event bus: :class:`KafkaBus` on kafka-python, the in-memory bus's semantics
on a real broker.

.. code-block:: python

    config = KafkaBusConfig(bootstrap_servers=broker.bootstrap_servers,
                            publish_timeout_s=5.0,
                            consumer_settings={"session_timeout_ms": 10_000})
    with KafkaBus(registry, config) as bus:
        sub = bus.subscribe(BackupRequestCreated, handler, group="backups",
                            retry=RetryTopicRetry(max_retries=5))
        sub.run(timeout=30)             # returns once the group join completed
        bus.publish(event)              # returns once acknowledged, else PublishError

Pieces, one concept each:

- publishing and re-producing: :mod:`offsetlab.bus.kafka_publish` (two producers with
  their own settings; ``PublishError`` names the topic, address and timeout);
- a subscription: :mod:`offsetlab.bus.kafka_subscription` (a consumer runner whose batch
  handler carries out the shared rule book, acknowledging copies before committing);
- this module: the configuration, topic creation (retry and dead-letter topics with the
  main topic's partition count, via the admin client) and the activity timeline.

Activity records (the timeline both buses share) are only built when someone listens
(:meth:`KafkaBus.add_listener`) or ``keep_activity=True``; otherwise the happy path pays
nothing for them.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from offsetlab.bus.config import (
    RUNNER_OWNED_KEYS,
    CrashPolicy,
    RunnerConfig,
    checked_bootstrap_servers,
)
from offsetlab.bus.errors import BusStateError, ConfigError
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.interface import (
    Activity,
    ActivityKind,
    ActivityListener,
    EventBus,
    Receipt,
    SubscriptionSpec,
    SubscriptionState,
)
from offsetlab.bus.kafka_publish import Producers
from offsetlab.bus.kafka_subscription import KafkaSubscription
from offsetlab.bus.retry import dead_letter_topic
from offsetlab.bus.runner import _reap_io_threads

__all__ = ["KafkaBus", "KafkaBusConfig", "KafkaSubscription", "DEFAULT_CONSUMER_SETTINGS"]

DEFAULT_CONSUMER_SETTINGS: Mapping[str, Any] = MappingProxyType(
    {"auto_offset_reset": "earliest", "metadata_max_age_ms": 5000})
"""Consumer defaults of the bus. ``auto_offset_reset="earliest"``: a new group reads a topic
from its beginning, so an event published right after ``run()`` returned is never skipped
by an offset reset to "latest". ``metadata_max_age_ms=5000``: a group whose leader assigned
partitions before its metadata showed a just-created topic (seen once on embedded Kafka:
an empty assignment that lasted over a minute with the 5 min default) notices the topic
within 5 s and rebalances."""

_PRODUCER_OWNED = frozenset({"bootstrap_servers", "client_id"})


def _check_number(key: str, value: object, *, positive: bool = True) -> None:
    if (not isinstance(value, int | float) or isinstance(value, bool)
            or not math.isfinite(value) or (value <= 0 if positive else value < 0)):
        raise ConfigError(f"KafkaBusConfig.{key}={value!r} must be a finite number > 0 (seconds)")


def _frozen(owner: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"KafkaBusConfig.{owner} must be a mapping of kafka-python settings, "
                          f"got {value!r}")
    return MappingProxyType(dict(value))


@dataclass(frozen=True, kw_only=True)
class KafkaBusConfig:
    """How a :class:`KafkaBus` talks to the broker; validated when built.

    - ``bootstrap_servers``: ``"host:port"`` (several comma separated) or a tuple.
    - ``client_settings``: kafka-python settings for every client (security, DNS, ...);
      each client gets the keys it knows. Keys no client knows raise.
    - ``publish_producer``: ``KafkaProducer`` settings for ``publish`` (over
      ``client_settings``); ``publish_timeout_s`` bounds a publish (metadata wait, bootstrap,
      acknowledgement): a broker that does not answer fails it after about that long.
    - ``reproduce_producer``: ``KafkaProducer`` settings for retry copies and dead letters;
      ``reproduce_timeout_s`` bounds waiting for their acknowledgements (once per batch).
    - ``consumer_settings``: ``KafkaConsumer`` settings for every subscription's runner
      (over :data:`DEFAULT_CONSUMER_SETTINGS`), e.g. ``session_timeout_ms``,
      ``max_poll_interval_ms``, ``max_poll_records``.
    - ``poll_timeout_ms``, ``crash_policy``: passed to each :class:`RunnerConfig`.
    - ``join_timeout_s``: how long ``Subscription.run()`` waits without a timeout argument.
    - ``create_topics`` (default ``True``): at ``start()``, create a missing main topic with
      ``default_partitions``, and the retry and dead-letter topics with the main topic's
      partition count (admin client); ``False`` leaves topics to the broker.
    - ``include_stacktrace``: add ``kafka_dlt-exception-stacktrace`` to copies.
    - ``keep_activity``: keep every :class:`Activity` in ``bus.activity`` (tests, notebooks).
    - ``name``: prefix of client ids and runner names.
    """

    bootstrap_servers: str | tuple[str, ...]
    client_settings: Mapping[str, Any] = field(default_factory=dict)
    publish_producer: Mapping[str, Any] = field(default_factory=dict)
    reproduce_producer: Mapping[str, Any] = field(default_factory=dict)
    publish_timeout_s: float = 10.0
    reproduce_timeout_s: float = 30.0
    consumer_settings: Mapping[str, Any] = field(default_factory=dict)
    poll_timeout_ms: int = 100
    crash_policy: CrashPolicy = field(default_factory=CrashPolicy)
    join_timeout_s: float = 60.0
    create_topics: bool = True
    default_partitions: int = 3
    admin_timeout_s: float = 30.0
    include_stacktrace: bool = False
    keep_activity: bool = False
    name: str = "offsetlab-bus"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bootstrap_servers",
                           checked_bootstrap_servers(self.bootstrap_servers, "KafkaBusConfig"))
        for key in ("client_settings", "publish_producer", "reproduce_producer",
                    "consumer_settings"):
            object.__setattr__(self, key, _frozen(key, getattr(self, key)))
        known = (set(KafkaProducer.DEFAULT_CONFIG) | set(KafkaConsumer.DEFAULT_CONFIG)
                 | set(KafkaAdminClient.DEFAULT_CONFIG))
        for key in self.client_settings:
            if key not in known:
                raise ConfigError(f"KafkaBusConfig.client_settings[{key!r}] is not a kafka-python "
                                  "client setting; check the spelling")
            if key in _PRODUCER_OWNED | RUNNER_OWNED_KEYS:
                raise ConfigError(f"KafkaBusConfig.client_settings[{key!r}] is set by the bus; "
                                  "use KafkaBusConfig.bootstrap_servers / name instead")
        for owner in ("publish_producer", "reproduce_producer"):
            settings: Mapping[str, Any] = getattr(self, owner)
            for key in settings:
                if key not in KafkaProducer.DEFAULT_CONFIG:
                    raise ConfigError(f"KafkaBusConfig.{owner}[{key!r}] is not a KafkaProducer "
                                      "setting; see KafkaProducer.DEFAULT_CONFIG")
                if key in _PRODUCER_OWNED or key in ("key_serializer", "value_serializer"):
                    raise ConfigError(f"KafkaBusConfig.{owner}[{key!r}] is set by the bus "
                                      "(records are bytes); remove it")
        for key in ("publish_timeout_s", "reproduce_timeout_s", "join_timeout_s",
                    "admin_timeout_s"):
            _check_number(key, getattr(self, key))
        for key in ("create_topics", "include_stacktrace", "keep_activity"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"KafkaBusConfig.{key} must be True or False")
        if (not isinstance(self.default_partitions, int) or isinstance(self.default_partitions, bool)
                or self.default_partitions < 1):
            raise ConfigError(f"KafkaBusConfig.default_partitions={self.default_partitions!r} "
                              "must be an int >= 1")
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("KafkaBusConfig.name must be a non-empty string")
        # Producer and runner settings fail here, not later on a thread.
        producers = self._producers()
        for kind in ("publish", "reproduce"):
            settings = self.publish_producer if kind == "publish" else self.reproduce_producer
            kw = producers.kwargs(kind)
            if kw["delivery_timeout_ms"] < kw.get("linger_ms", 0) + kw["request_timeout_ms"]:
                raise ConfigError(
                    f"KafkaBusConfig.{kind}_producer: delivery_timeout_ms "
                    f"({kw['delivery_timeout_ms']}) must be >= linger_ms + request_timeout_ms "
                    f"({kw.get('linger_ms', 0)} + {kw['request_timeout_ms']}); settings given: "
                    f"{dict(settings)}"
                )
        self.runner_config(group="check", topics=("check",), name="check")

    def _producers(self) -> Producers:
        return Producers(
            bootstrap_servers=self.bootstrap_servers, name=self.name,
            client_settings=self.client_settings, publish_settings=self.publish_producer,
            reproduce_settings=self.reproduce_producer, publish_timeout_s=self.publish_timeout_s,
            reproduce_timeout_s=self.reproduce_timeout_s,
        )

    def consumer_kwargs(self) -> dict[str, Any]:
        """Consumer settings of a subscription: defaults, client settings, then overrides."""
        settings: dict[str, Any] = dict(DEFAULT_CONSUMER_SETTINGS)
        settings.update({k: v for k, v in self.client_settings.items()
                         if k in KafkaConsumer.DEFAULT_CONFIG and k not in RUNNER_OWNED_KEYS})
        settings.update(self.consumer_settings)
        return settings

    def runner_config(self, *, group: str, topics: tuple[str, ...], name: str) -> RunnerConfig:
        """The :class:`RunnerConfig` of one subscription (``ConfigError`` names the key)."""
        try:
            return RunnerConfig(bootstrap_servers=self.bootstrap_servers, group_id=group,
                                topics=topics, name=name, poll_timeout_ms=self.poll_timeout_ms,
                                crash_policy=self.crash_policy,
                                consumer_settings=self.consumer_kwargs())
        except ConfigError as exc:
            raise ConfigError(f"KafkaBusConfig (consumer_settings / poll_timeout_ms / "
                              f"crash_policy): {exc}") from exc

    def admin_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {k: v for k, v in self.client_settings.items()
                                  if k in KafkaAdminClient.DEFAULT_CONFIG}
        servers = self.bootstrap_servers
        timeout_ms = round(self.admin_timeout_s * 1000)
        kwargs.setdefault("request_timeout_ms", min(30_000, timeout_ms))
        kwargs.update(bootstrap_servers=list(servers) if isinstance(servers, tuple) else servers,
                      client_id=f"{self.name}-admin", bootstrap_timeout_ms=timeout_ms)
        return kwargs


class KafkaBus(EventBus):
    """The event bus on a Kafka broker; see the module docstring."""

    def __init__(self, registry: EventRegistry, config: KafkaBusConfig) -> None:
        if not isinstance(registry, EventRegistry):
            raise ConfigError(f"KafkaBus(registry=...) needs an EventRegistry, got {registry!r}")
        if not isinstance(config, KafkaBusConfig):
            raise ConfigError(f"KafkaBus(config=...) needs a KafkaBusConfig, got {config!r}")
        self.registry = registry
        self.config = config
        self.name = config.name
        self.activity: list[Activity] = []
        self._listeners: tuple[ActivityListener, ...] = ()
        self.listening = config.keep_activity
        self._producers = config._producers()
        self._subscriptions: list[KafkaSubscription] = []
        self._ensured: set[str] = set()
        self._admin: KafkaAdminClient | None = None
        self._lock = threading.RLock()
        self._serial = itertools.count(1)
        self._closed = False

    def __repr__(self) -> str:
        return f"KafkaBus({self.config.bootstrap_servers!r}, name={self.name!r})"

    # -- publishing ----------------------------------------------------------------------

    def publish(self, event: Event) -> Receipt:
        """Publish one event; return once the broker acknowledged it, else ``PublishError``."""
        self._check_open("publish")
        encoded = self.registry.encode(event)
        try:
            receipt = self._producers.publish(encoded.topic, encoded.value, encoded.key,
                                              encoded.headers)
        except Exception as exc:
            self._report(ActivityKind.PUBLISH_FAILED, topic=encoded.topic, key=encoded.key,
                         event=event, detail=str(exc))
            raise
        if self.listening:
            self._report(ActivityKind.PUBLISHED, topic=receipt.topic, partition=receipt.partition,
                         offset=receipt.offset, key=encoded.key, event=event)
        return receipt

    def publish_many(self, events: Iterable[Event]) -> list[Receipt]:
        """Publish events in order: send all, then wait for every acknowledgement.

        Faster than one ``publish`` per event (the producer batches); ``PublishError`` at
        the first event not acknowledged within ``publish_timeout_s`` of the call (events
        before it were acknowledged; later ones may or may not have been written).
        """
        self._check_open("publish_many")
        events = list(events)
        encoded = [self.registry.encode(e) for e in events]
        receipts = self._producers.publish_many(
            [(e.topic, e.value, e.key, e.headers) for e in encoded])
        if self.listening:
            for event, enc, receipt in zip(events, encoded, receipts, strict=True):
                self._report(ActivityKind.PUBLISHED, topic=receipt.topic,
                             partition=receipt.partition, offset=receipt.offset, key=enc.key,
                             event=event)
        return receipts

    def publish_raw(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> Receipt:
        """Publish bytes as they are (poison messages in tests)."""
        self._check_open("publish_raw")
        receipt = self._producers.publish(topic, value, key, headers)
        if self.listening:
            self._report(ActivityKind.PUBLISHED, topic=receipt.topic, partition=receipt.partition,
                         offset=receipt.offset, key=key)
        return receipt

    # -- subscriptions -------------------------------------------------------------------

    def _subscribe(self, spec: SubscriptionSpec) -> KafkaSubscription:
        self._check_open("subscribe")
        serial = next(self._serial)
        runner_config = self.config.runner_config(
            group=spec.group, topics=spec.topics, name=f"{self.name}-{spec.group}-{serial}")
        sub = KafkaSubscription(self, spec, runner_config)
        with self._lock:
            self._subscriptions.append(sub)
        return sub

    @property
    def subscriptions(self) -> tuple[KafkaSubscription, ...]:
        with self._lock:
            return tuple(self._subscriptions)

    def _ensure_topics(self, spec: SubscriptionSpec) -> None:
        """Create the main, retry and dead-letter topics of ``spec`` if missing."""
        if not self.config.create_topics:
            return
        needed = [spec.topic, *spec.topics[1:],
                  dead_letter_topic(spec.topic, spec.retry.dead_letter_suffix)]
        with self._lock:
            if all(t in self._ensured for t in needed):
                return
            admin = self._admin_client()
            try:
                partitions = self._partition_count(admin, spec.topic)
                if partitions is None:
                    self._create(admin, [spec.topic], self.config.default_partitions)
                    partitions = self.config.default_partitions
                missing = [t for t in needed[1:] if self._partition_count(admin, t) is None]
                if missing:
                    self._create(admin, missing, partitions)
            except kafka_errors.KafkaError as exc:
                raise BusStateError(
                    f"could not create topics {needed} on {self.config.bootstrap_servers} "
                    f"within {self.config.admin_timeout_s:g} s: {type(exc).__name__}: {exc}; "
                    "create them yourself and pass create_topics=False, or check the broker"
                ) from exc
            self._ensured.update(needed)

    @staticmethod
    def _partition_count(admin: KafkaAdminClient, topic: str) -> int | None:
        [described] = admin.describe_topics([topic])
        if described.get("error_code", 0) != 0:
            return None
        return len(described.get("partitions") or ()) or None

    def _create(self, admin: KafkaAdminClient, topics: list[str], partitions: int) -> None:
        timeout_ms = round(self.config.admin_timeout_s * 1000)
        admin.create_topics({t: {"num_partitions": partitions} for t in topics},
                            timeout_ms=timeout_ms, raise_errors=False)
        admin.wait_for_topics(topics, timeout_ms=timeout_ms)

    def _admin_client(self) -> KafkaAdminClient:
        if self._admin is None:
            kwargs = self.config.admin_kwargs()
            before = {t.ident for t in threading.enumerate()}
            try:
                self._admin = KafkaAdminClient(**kwargs)
            except Exception as exc:
                _reap_io_threads(before, kwargs["client_id"])
                raise BusStateError(
                    f"the admin client could not connect to {self.config.bootstrap_servers} "
                    f"within {self.config.admin_timeout_s:g} s ({type(exc).__name__}: {exc}); "
                    "is the broker up?"
                ) from exc
        return self._admin

    # -- activity ------------------------------------------------------------------------

    def add_listener(self, listener: ActivityListener) -> None:
        """Report every :class:`Activity` to ``listener`` (called on the bus's threads)."""
        with self._lock:
            self._listeners = (*self._listeners, listener)
            self.listening = True

    def activities(self, kind: ActivityKind | None = None) -> list[Activity]:
        """Kept activities (``keep_activity=True``), optionally of one kind."""
        with self._lock:
            return [a for a in self.activity if kind is None or a.kind is kind]

    def _report(
        self,
        kind: ActivityKind,
        *,
        sub: KafkaSubscription | None = None,
        record: Any = None,
        event: Event | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        key: bytes | None = None,
        attempt: int | None = None,
        target_topic: str | None = None,
        detail: str = "",
    ) -> None:
        if not self.listening:
            return
        if record is not None:
            topic, partition, offset, key = record.topic, record.partition, record.offset, record.key
        activity = Activity(
            kind=kind, at=time.time(),
            subscription=sub.spec.name if sub else None, group=sub.spec.group if sub else None,
            topic=topic, partition=partition, offset=offset,
            key=key.decode("utf-8", "replace") if key is not None else None,
            event_type=event.event_type if event else None,
            event_id=event.event_id if event else None,
            attempt=attempt, target_topic=target_topic, detail=detail,
        )
        with self._lock:
            if self.config.keep_activity:
                self.activity.append(activity)
            listeners = self._listeners
        for listener in listeners:
            listener(activity)

    # -- lifecycle -----------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise BusStateError(f"{what}() on a closed KafkaBus {self.name!r}; make a new bus")

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop every subscription, flush and close the producers and the admin client."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for sub in self.subscriptions:
            if sub.state is not SubscriptionState.STOPPED or sub.runner is not None:
                try:
                    sub.stop(timeout_s)
                except Exception as exc:  # keep closing the rest; report the first after
                    errors.append(exc)
        self._producers.close(timeout_s)
        with self._lock:
            admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:  # best effort: the bus is going away
                pass
        if errors:
            raise errors[0]
