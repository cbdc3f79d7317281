"""A broker somebody else runs: bootstrap servers from a parameter or the environment.

Security settings come from the environment (``KAFKA_SECURITY_PROTOCOL``,
``KAFKA_SASL_MECHANISM``, ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD``,
``KAFKA_SSL_CAFILE``) and are passed to every client through ``handle.client_config``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .errors import BrokerUnreachable
from .handle import BrokerHandle
from .process import metadata_answers

ENV_SECURITY = {
    "KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SASL_USERNAME": "sasl_plain_username",
    "KAFKA_SASL_PASSWORD": "sasl_plain_password",
    "KAFKA_SSL_CAFILE": "ssl_cafile",
}


def external_bootstrap(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return env.get("KAFKA_BOOTSTRAP_SERVERS") or None


def security_config(env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    return {key: env[var] for var, key in ENV_SECURITY.items() if env.get(var)}


def broker_version(bootstrap: str, client_config: dict) -> str:
    """The newest broker version kafka-python's ApiVersions probe recognises (a lower bound)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **client_config)
    try:
        version = admin.config.get("api_version") or ()
        return ".".join(str(p) for p in (tuple(version) + (0, 0, 0))[:3])
    finally:
        admin.close()


def connect_external(bootstrap: str, *, timeout_s: float = 10.0) -> BrokerHandle:
    client_config = security_config()
    if not metadata_answers(bootstrap, timeout_s=timeout_s, client_config=client_config):
        raise BrokerUnreachable(
            f"no Kafka broker answered a metadata request at {bootstrap} within {timeout_s:.0f} s; "
            "check KAFKA_BOOTSTRAP_SERVERS / the bootstrap_servers parameter and the security "
            "settings (KAFKA_SECURITY_PROTOCOL, ...)"
        )
    try:
        version = broker_version(bootstrap, client_config)
    except Exception:  # noqa: BLE001 - version is informative only
        version = "unknown"
    return BrokerHandle(kind="external", bootstrap_servers=bootstrap, version=version, log_path=None,
                        capabilities=frozenset(), client_config=client_config)
