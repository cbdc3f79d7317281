"""The kafka-python transport: the bus and the consumer runner on kafka-python 3.0.x.

Settings are kafka-python's keyword names (``session_timeout_ms``, ``linger_ms``, ...), checked
against the client classes' ``DEFAULT_CONFIG`` when a config is built, so a typo fails
there. The client's quirks live in :mod:`offsetlab.bus.transports.kafka_python.compat`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from offsetlab.bus.config import RUNNER_OWNED_KEYS, RunnerConfig
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.transports.kafka_python.admin import Admin
from offsetlab.bus.transports.kafka_python.consumer import KafkaPythonConsumer
from offsetlab.bus.transports.kafka_python.producer import Producers
from offsetlab.bus.transports.kafka_python.transactions import TransactionalProducer

__all__ = ["TRANSPORT", "KafkaPythonTransport"]

_PRODUCER_OWNED = frozenset({"bootstrap_servers", "client_id"})


class KafkaPythonTransport:
    """See the module docstring; the one instance is :data:`TRANSPORT`."""

    name = "kafka-python"

    def check_consumer_settings(self, settings: Mapping[str, Any], owner: str) -> dict[str, Any]:
        checked = dict(settings)
        for key, value in checked.items():
            if key not in KafkaConsumer.DEFAULT_CONFIG:
                raise ConfigError(
                    f"{owner}.consumer_settings[{key!r}] is not a kafka-python "
                    f"KafkaConsumer setting; check the spelling (see KafkaConsumer.DEFAULT_CONFIG)"
                )
            if key == "enable_auto_commit":
                if value is not False:
                    raise ConfigError(
                        f"{owner}.consumer_settings['enable_auto_commit'] must be False or "
                        "absent: the runner commits offset + 1 of settled records itself "
                        "(auto-commit would commit records that failed)"
                    )
                continue
            if key in RUNNER_OWNED_KEYS:
                raise ConfigError(
                    f"{owner}.consumer_settings[{key!r}] is set by the runner; use the "
                    f"RunnerConfig field instead (bootstrap_servers, group_id, name)"
                    if key != "consumer_timeout_ms"
                    else f"{owner}.consumer_settings['consumer_timeout_ms'] only affects "
                    "iteration, which the runner does not use; remove it"
                )
        return checked

    def check_client_settings(self, settings: Mapping[str, Any], owner: str) -> dict[str, Any]:
        known = (set(KafkaProducer.DEFAULT_CONFIG) | set(KafkaConsumer.DEFAULT_CONFIG)
                 | set(KafkaAdminClient.DEFAULT_CONFIG))
        for key in settings:
            if key not in known:
                raise ConfigError(f"{owner}.client_settings[{key!r}] is not a kafka-python "
                                  "client setting; check the spelling")
            if key in _PRODUCER_OWNED | RUNNER_OWNED_KEYS:
                raise ConfigError(f"{owner}.client_settings[{key!r}] is set by the bus; "
                                  f"use {owner}.bootstrap_servers / name instead")
        return dict(settings)

    def check_producer_settings(self, settings: Mapping[str, Any], owner: str) -> dict[str, Any]:
        for key in settings:
            if key not in KafkaProducer.DEFAULT_CONFIG:
                raise ConfigError(f"{owner}[{key!r}] is not a KafkaProducer "
                                  "setting; see KafkaProducer.DEFAULT_CONFIG")
            if key in _PRODUCER_OWNED or key in ("key_serializer", "value_serializer"):
                raise ConfigError(f"{owner}[{key!r}] is set by the bus "
                                  "(records are bytes); remove it")
        return dict(settings)

    def consumer_keys(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in settings.items()
                if k in KafkaConsumer.DEFAULT_CONFIG and k not in RUNNER_OWNED_KEYS}

    def open_consumer(self, config: RunnerConfig,
                      factory: Callable[..., Any] | None) -> KafkaPythonConsumer:
        return KafkaPythonConsumer.open(config, factory)

    def producers(self, **kwargs: Any) -> Producers:
        return Producers(**kwargs)

    def transactional(self, **kwargs: Any) -> TransactionalProducer:
        return TransactionalProducer(**kwargs)

    def admin(self, *, bootstrap_servers: str | tuple[str, ...], client_id: str,
              client_settings: Mapping[str, Any], timeout_s: float) -> Admin:
        return Admin(bootstrap_servers=bootstrap_servers, client_id=client_id,
                     client_settings=client_settings, timeout_s=timeout_s)


TRANSPORT = KafkaPythonTransport()
