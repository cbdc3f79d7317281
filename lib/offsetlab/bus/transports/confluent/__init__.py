"""The confluent-kafka transport: the bus and the consumer runner on confluent-kafka 2.x
(librdkafka).

Settings are kafka-python's names, translated to librdkafka's properties where librdkafka
has the setting, or librdkafka's dotted properties as they are
(:mod:`offsetlab.bus.transports.confluent.settings`); a name librdkafka has no equivalent
for, or an unknown key, fails when the config is built. The client's quirks live in
:mod:`offsetlab.bus.transports.confluent.compat`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from offsetlab.bus.config import RUNNER_OWNED_KEYS, RunnerConfig
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.transports.confluent.admin import Admin
from offsetlab.bus.transports.confluent.consumer import ConfluentConsumer
from offsetlab.bus.transports.confluent.producer import Producers
from offsetlab.bus.transports.confluent.settings import (
    ADMIN,
    CONSUMER,
    OWNED_PROPERTIES,
    PRODUCER,
    applies_to,
    check,
)

__all__ = ["TRANSPORT", "ConfluentTransport"]

_EVERY_CLIENT = frozenset({CONSUMER, PRODUCER, ADMIN})


class ConfluentTransport:
    """See the module docstring; the one instance is :data:`TRANSPORT`."""

    name = "confluent-kafka"

    def check_consumer_settings(self, settings: Mapping[str, Any], owner: str) -> dict[str, Any]:
        return check(settings, owner, "consumer_settings", frozenset({CONSUMER}))

    def check_client_settings(self, settings: Mapping[str, Any], owner: str) -> dict[str, Any]:
        return check(settings, owner, "client_settings", _EVERY_CLIENT)

    def check_producer_settings(self, settings: Mapping[str, Any], owner: str) -> dict[str, Any]:
        return check(settings, owner, None, frozenset({PRODUCER}))

    def consumer_keys(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in settings.items() if applies_to(k, CONSUMER)
                and k not in RUNNER_OWNED_KEYS and k not in OWNED_PROPERTIES}

    def open_consumer(self, config: RunnerConfig,
                      factory: Callable[..., Any] | None) -> ConfluentConsumer:
        return ConfluentConsumer.open(config, factory)

    def producers(self, **kwargs: Any) -> Producers:
        return Producers(**kwargs)

    def transactional(self, **kwargs: Any) -> Any:
        raise ConfigError("KafkaBusConfig.transactional_id: the transactional mode runs on "
                          "kafka-python only for now; use client='kafka-python'")

    def admin(self, *, bootstrap_servers: str | tuple[str, ...], client_id: str,
              client_settings: Mapping[str, Any], timeout_s: float) -> Admin:
        return Admin(bootstrap_servers=bootstrap_servers, client_id=client_id,
                     client_settings=client_settings, timeout_s=timeout_s)


TRANSPORT = ConfluentTransport()
