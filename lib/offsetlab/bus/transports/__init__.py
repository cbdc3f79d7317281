"""Transports: the client libraries the Kafka bus and the consumer runner run on.

=================== ============================================= ===========================
``client=``         package                                       client library
=================== ============================================= ===========================
``"kafka-python"``  :mod:`offsetlab.bus.transports.kafka_python`  kafka-python (pure Python)
``"confluent-kafka"`` :mod:`offsetlab.bus.transports.confluent`   confluent-kafka (librdkafka)
=================== ============================================= ===========================

The in-memory transport is :class:`offsetlab.bus.InMemoryBus` itself (no client at all).
Each package imports its client library lazily (when :func:`get` is first asked for it), so
``import offsetlab.bus`` needs neither; each has one public ``compat`` module with the
client's quirks and workarounds, which the lab imports too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from offsetlab.bus.errors import ConfigError

if TYPE_CHECKING:
    from offsetlab.bus.ports import Transport

__all__ = ["CLIENTS", "DEFAULT_CLIENT", "get", "check_client"]

CLIENTS: tuple[str, ...] = ("kafka-python", "confluent-kafka")
DEFAULT_CLIENT = "kafka-python"
_MODULES = {"kafka-python": "offsetlab.bus.transports.kafka_python",
            "confluent-kafka": "offsetlab.bus.transports.confluent"}


def check_client(client: object, owner: str) -> str:
    """``client`` if it names a transport, else ``ConfigError`` naming ``owner``."""
    if client not in _MODULES:
        raise ConfigError(f"{owner}.client={client!r}: use one of {', '.join(CLIENTS)}")
    assert isinstance(client, str)
    return client


def get(client: str) -> Transport:
    """The transport for ``client`` (imports its client library on first use)."""
    module = importlib.import_module(_MODULES[check_client(client, "transport")])
    transport: Transport = module.TRANSPORT
    return transport
