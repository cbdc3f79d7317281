"""Kind ``auto``: external if given, else testcontainers if Docker answers, else ``kafka`` if
Java 17+ is there, else ``tansu``. Every probe is injectable so the choice is unit-testable."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

KINDS = ("auto", "kafka", "tansu", "testcontainers", "external")


@dataclass(frozen=True)
class Choice:
    kind: str
    bootstrap_servers: str | None
    reasons: tuple[str, ...] = field(default=())

    def explain(self) -> str:
        return f"broker auto -> {self.kind}: " + "; ".join(self.reasons)


def _java_probe() -> tuple[bool, str]:
    from .errors import JavaNotFound
    from .kafka import java_binary, java_major

    try:
        java = java_binary()
        major = java_major(java)
    except JavaNotFound as exc:
        return False, str(exc).split(";")[0]
    if major < 17:
        return False, f"Java {major} at {java} is older than 17"
    return True, f"Java {major} at {java}"


def choose_kind(bootstrap_servers: str | None = None, *,
                env_bootstrap: Callable[[], str | None] | None = None,
                docker: Callable[[], tuple[bool, str]] | None = None,
                java: Callable[[], tuple[bool, str]] | None = None) -> Choice:
    from .docker import docker_ping
    from .external import external_bootstrap

    env_bootstrap = env_bootstrap or external_bootstrap
    docker = docker or docker_ping
    java = java or _java_probe
    reasons: list[str] = []
    servers = bootstrap_servers or env_bootstrap()
    if servers:
        return Choice("external", servers, (f"bootstrap servers given ({servers})",))
    reasons.append("external skipped: no bootstrap servers given and KAFKA_BOOTSTRAP_SERVERS unset")
    ok, why = docker()
    if ok:
        return Choice("testcontainers", None, (*reasons, why))
    reasons.append(f"testcontainers skipped: {why}")
    ok, why = java()
    if ok:
        return Choice("kafka", None, (*reasons, f"embedded Apache Kafka on {why}"))
    reasons.append(f"kafka skipped: {why}")
    return Choice("tansu", None, (*reasons, "tansu needs nothing but its bundled binary"))
