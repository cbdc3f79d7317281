"""The Kafka bus's configuration: :class:`KafkaBusConfig`, validated when built.

Which client library runs underneath is ``client`` (:mod:`offsetlab.bus.transports`); its
transport checks the client settings, so a typo fails when the config is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from offsetlab.bus import transports
from offsetlab.bus.config import CrashPolicy, RunnerConfig, checked_bootstrap_servers
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.ports import AdminClient, ProducerClient, TransactionClient, Transport
from offsetlab.bus.transports import check_client

__all__ = ["KafkaBusConfig", "DEFAULT_CONSUMER_SETTINGS"]

DEFAULT_CONSUMER_SETTINGS: Mapping[str, Any] = MappingProxyType(
    {"auto_offset_reset": "earliest", "metadata_max_age_ms": 5000})
"""Consumer defaults of the bus. ``auto_offset_reset="earliest"``: a new group reads a topic
from its beginning, so an event published right after ``run()`` returned is never skipped
by an offset reset to "latest". ``metadata_max_age_ms=5000``: a group whose leader assigned
partitions before its metadata showed a just-created topic (seen once on embedded Kafka:
an empty assignment that lasted over a minute with the 5 min default) notices the topic
within 5 s and rebalances."""

def _check_number(key: str, value: object, *, positive: bool = True) -> None:
    if (not isinstance(value, int | float) or isinstance(value, bool)
            or not math.isfinite(value) or (value <= 0 if positive else value < 0)):
        raise ConfigError(f"KafkaBusConfig.{key}={value!r} must be a finite number > 0 (seconds)")


def _frozen(owner: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"KafkaBusConfig.{owner} must be a mapping of client settings, "
                          f"got {value!r}")
    return MappingProxyType(dict(value))


@dataclass(frozen=True, kw_only=True)
class KafkaBusConfig:
    """How a :class:`KafkaBus` talks to the broker; validated when built.

    - ``bootstrap_servers``: ``"host:port"`` (several comma separated) or a tuple.
    - ``client``: the client library underneath, ``"kafka-python"`` (default) or
      ``"confluent-kafka"`` (:mod:`offsetlab.bus.transports`). Settings below use
      kafka-python's names on both (the confluent-kafka transport translates the ones
      librdkafka has, and also takes librdkafka's dotted properties as they are).
    - ``consumer_factory``: replaces the client's consumer class for every subscription
      (kafka-python: ``factory(**kwargs)``, e.g.
      :func:`offsetlab.bus.transports.kafka_python.compat.warmed_consumer`); ``None``: the
      client's own.
    - ``client_settings``: settings for every client (security, DNS, ...); each client gets
      the keys it knows. Keys no client knows raise.
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
    - ``transactional_id``: the transactional mode (exactly-once for effects inside Kafka;
      kafka-python only). Each subscription gets a transactional producer with the id
      ``f"{transactional_id}.{group}"`` (one subscription per group on such a bus); every
      poll batch is one transaction holding its retry copies, dead letters, the events its
      handler published (:mod:`offsetlab.bus.handler_publishes`) and its consumed offsets;
      consumers read ``read_committed``. Give each worker *slot* a fixed id: a worker that
      replaces a dead one under the same id fences it and aborts its open transaction at
      once (:mod:`offsetlab.bus.transports.kafka_python.transactions`). ``None``: at-least-once.
    """

    bootstrap_servers: str | tuple[str, ...]
    client: str = "kafka-python"
    consumer_factory: Callable[..., Any] | None = None
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
    transactional_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bootstrap_servers",
                           checked_bootstrap_servers(self.bootstrap_servers, "KafkaBusConfig"))
        check_client(self.client, "KafkaBusConfig")
        if self.consumer_factory is not None and not callable(self.consumer_factory):
            raise ConfigError(f"KafkaBusConfig.consumer_factory must be callable or None, "
                              f"got {self.consumer_factory!r}")
        for key in ("client_settings", "publish_producer", "reproduce_producer",
                    "consumer_settings"):
            object.__setattr__(self, key, _frozen(key, getattr(self, key)))
        transport = self.transport()
        transport.check_client_settings(self.client_settings, "KafkaBusConfig")
        for owner in ("publish_producer", "reproduce_producer"):
            transport.check_producer_settings(getattr(self, owner), f"KafkaBusConfig.{owner}")
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
        if self.transactional_id is not None:
            if not isinstance(self.transactional_id, str) or not self.transactional_id:
                raise ConfigError("KafkaBusConfig.transactional_id must be a non-empty string "
                                  f"or None, got {self.transactional_id!r}")
            if self.client != "kafka-python":
                raise ConfigError("KafkaBusConfig.transactional_id: the transactional mode runs "
                                  f"on kafka-python only for now (client={self.client!r})")
            if self.consumer_settings.get("isolation_level", "read_committed") != "read_committed":
                raise ConfigError("KafkaBusConfig.consumer_settings['isolation_level'] must be "
                                  "'read_committed' (or absent) with a transactional_id")
        # Producer and runner settings fail here, not later on a thread.
        self._producers()
        self.runner_config(group="check", topics=("check",), name="check")

    def transport(self) -> Transport:
        """The client library's transport (imported on first use)."""
        return transports.get(self.client)

    def _producers(self) -> ProducerClient:
        return self.transport().producers(
            bootstrap_servers=self.bootstrap_servers, name=self.name,
            client_settings=self.client_settings, publish_settings=self.publish_producer,
            reproduce_settings=self.reproduce_producer, publish_timeout_s=self.publish_timeout_s,
            reproduce_timeout_s=self.reproduce_timeout_s,
        )

    def consumer_kwargs(self) -> dict[str, Any]:
        """Consumer settings of a subscription: defaults, client settings, then overrides."""
        settings: dict[str, Any] = dict(DEFAULT_CONSUMER_SETTINGS)
        settings.update(self.transport().consumer_keys(self.client_settings))
        settings.update(self.consumer_settings)
        if self.transactional_id is not None:
            settings["isolation_level"] = "read_committed"
        return settings

    def runner_config(self, *, group: str, topics: tuple[str, ...], name: str) -> RunnerConfig:
        """The :class:`RunnerConfig` of one subscription (``ConfigError`` names the key)."""
        try:
            return RunnerConfig(bootstrap_servers=self.bootstrap_servers, group_id=group,
                                topics=topics, name=name, poll_timeout_ms=self.poll_timeout_ms,
                                crash_policy=self.crash_policy, client=self.client,
                                consumer_settings=self.consumer_kwargs())
        except ConfigError as exc:
            raise ConfigError(f"KafkaBusConfig (consumer_settings / poll_timeout_ms / "
                              f"crash_policy): {exc}") from exc

    def transactional_producer(self, group: str) -> TransactionClient:
        """The transactional producer of the subscription of ``group`` (transactional mode):
        the reproduce producer's settings and timeout, id ``<transactional_id>.<group>``."""
        if self.transactional_id is None:
            raise ConfigError("KafkaBusConfig.transactional_id is not set")
        txn_id = f"{self.transactional_id}.{group}"
        return self.transport().transactional(
            bootstrap_servers=self.bootstrap_servers, transactional_id=txn_id,
            client_id=f"{self.name}-txn-{group}", client_settings=self.client_settings,
            settings=self.reproduce_producer, timeout_s=self.reproduce_timeout_s)

    def admin(self) -> AdminClient:
        """A (lazily connecting) admin client for topic creation."""
        return self.transport().admin(
            bootstrap_servers=self.bootstrap_servers, client_id=f"{self.name}-admin",
            client_settings=self.client_settings, timeout_s=self.admin_timeout_s)
