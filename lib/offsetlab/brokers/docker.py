"""Kind ``testcontainers``: Confluent's cp-kafka image in KRaft mode, only when Docker answers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import DockerUnavailable
from .handle import BrokerHandle, Capability

#: Pinned image (Kafka 3.9 in KRaft mode).
CP_KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"
#: The Apache Kafka version inside that image.
CP_KAFKA_APACHE_VERSION = "3.9.0"


def docker_ping(timeout_s: float = 2.0) -> tuple[bool, str]:
    """(answers, why): whether a Docker daemon answers a ping right now."""
    try:
        import docker
    except ImportError:
        return False, "the docker Python package is not installed (pip install 'offsetlab[dev]')"
    try:
        client = docker.from_env(timeout=timeout_s)
        client.ping()
        client.close()
        return True, "Docker daemon answered a ping"
    except Exception as exc:  # noqa: BLE001 - any failure means "no Docker"
        return False, f"no Docker daemon answered ({type(exc).__name__}: {str(exc)[:120]})"


@contextmanager
def testcontainers_broker() -> Iterator[BrokerHandle]:
    ok, why = docker_ping()
    if not ok:
        raise DockerUnavailable(f"kind 'testcontainers' needs a Docker daemon: {why}; "
                                "use --kind kafka (embedded) or tansu")
    from testcontainers.kafka import KafkaContainer

    t0 = time.monotonic()
    with KafkaContainer(CP_KAFKA_IMAGE).with_kraft() as container:
        yield BrokerHandle(kind="testcontainers", bootstrap_servers=container.get_bootstrap_server(),
                           version=CP_KAFKA_APACHE_VERSION, log_path=None,
                           capabilities=frozenset({Capability.PERSISTENT}),
                           cold_start_s=time.monotonic() - t0)
