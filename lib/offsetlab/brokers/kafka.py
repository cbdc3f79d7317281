"""Real Apache Kafka 4.x from its Maven jars on the local JDK, single-node KRaft.

Each broker gets random free ports, a temporary data dir, a ``server.properties`` with our
defaults plus the caller's overrides, and runs under :mod:`guard` so it never outlives the
process that started it.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import BrokerExited, JavaNotFound
from .handle import BrokerHandle, Capability
from .jars import KAFKA_VERSION, ensure_kafka_jars
from .process import GuardedProcess, ensure_port_free, free_port, log_tail

log = logging.getLogger(__name__)

#: Broker defaults for a laptop-sized single node. Kafka's own default for the initial
#: rebalance delay is 3000 ms; we keep it (experiments override it) so findings are about
#: the real default.
DEFAULT_SETTINGS: dict[str, Any] = {
    "num.partitions": 1,
    "offsets.topic.replication.factor": 1,
    "offsets.topic.num.partitions": 3,
    "transaction.state.log.replication.factor": 1,
    "transaction.state.log.min.isr": 1,
    "share.coordinator.state.topic.replication.factor": 1,
    "share.coordinator.state.topic.min.isr": 1,
    "auto.create.topics.enable": True,
    "group.initial.rebalance.delay.ms": 3000,
    "group.min.session.timeout.ms": 1000,
    "log.flush.interval.messages": 1,
    "log.segment.bytes": 16 * 1024 * 1024,
}
JVM_OPTS = ["-Xms256m", "-Xmx768m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true", "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            # wall-clock times (the default is milliseconds since start), so that a lab can
            # line the group coordinator's INFO lines up with what its clients recorded
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSZ"]


def java_binary() -> str:
    home = os.environ.get("JAVA_HOME")
    candidate = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise JavaNotFound(
            "kind 'kafka' needs Java 17 or newer and none was found (JAVA_HOME unset and no `java` "
            "on PATH); install OpenJDK 17 (apt-get install openjdk-17-jre-headless, or conda "
            "install openjdk=17) or use --kind tansu"
        )
    return candidate


def java_major(java: str | None = None) -> int:
    java = java or java_binary()
    out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        raise JavaNotFound(f"could not read the Java version from `{java} -version`: {out.strip()[:200]}")
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def java17() -> str:
    """The Java binary, checked to be Java 17 or newer."""
    java = java_binary()
    major = java_major(java)
    if major < 17:
        raise JavaNotFound(f"kind 'kafka' needs Java 17+, found Java {major} at {java}; "
                           "install OpenJDK 17 or set JAVA_HOME")
    return java


def _formatted_cluster_id(data_dir: Path) -> str | None:
    """The cluster id a formatted data dir holds (``meta.properties``), e.g. one formatted
    before (``--ignore-formatted`` keeps it)."""
    meta = data_dir / "meta.properties"
    if not meta.exists():
        return None
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return None


def _props(settings: Mapping[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return "".join(f"{k}={fmt(v)}\n" for k, v in settings.items())


def new_cluster_id() -> str:
    """A random KRaft cluster id (22 characters of URL-safe base64, as ``kafka-storage random-uuid``)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def format_storage(java: str, classpath: str, properties: Path, data_dir: Path, cluster_id: str,
                   *, attempts: int = 3) -> str:
    """``kafka.tools.StorageTool format`` the ``log.dirs`` of ``properties`` with ``cluster_id``;
    returns the cluster id the dir holds (``--ignore-formatted`` keeps an earlier one). Retried:
    under heavy load (load average > 14 on 2 cores) it failed twice in a day of notebook runs."""
    tail = ""
    for attempt in range(1, attempts + 1):
        try:
            out = subprocess.run(
                [java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", classpath,
                 "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(properties),
                 "--ignore-formatted"],
                capture_output=True, text=True, timeout=180,
            )
        except subprocess.TimeoutExpired as exc:
            tail = f"timed out after {exc.timeout} s"
            continue
        if out.returncode == 0:
            return _formatted_cluster_id(data_dir) or cluster_id
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-20:])
        log.warning("StorageTool format attempt %d/%d failed: %s", attempt, attempts, tail[-300:])
        time.sleep(0.5 * attempt)
    raise BrokerExited(f"kafka.tools.StorageTool format of {data_dir} failed {attempts} times",
                       log_tail=tail)


class KafkaBroker:
    """Process management for one embedded Kafka; use through :func:`offsetlab.brokers.start_broker`."""

    kind = "kafka"

    def __init__(self, settings: Mapping[str, Any] | None = None, *, port: int | None = None,
                 version: str = KAFKA_VERSION, start_timeout_s: float = 90.0,
                 workdir: Path | None = None) -> None:
        self.version = version
        self.start_timeout_s = start_timeout_s
        self.java = java17()
        self.libs = ensure_kafka_jars(version)
        if port is not None:
            ensure_port_free(port)
        self.port = port or free_port()
        self.controller_port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="offsetlab-kafka-") if workdir is None else None
        self.workdir = Path(self._tmp.name) if self._tmp else workdir
        assert self.workdir is not None
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "broker.log"
        self.settings = {**DEFAULT_SETTINGS, **dict(settings or {})}
        self.bootstrap = f"127.0.0.1:{self.port}"
        props = {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            **self.settings,
        }
        self.properties = self.workdir / "server.properties"
        self.properties.write_text(_props(props))
        self._format()
        self.proc: GuardedProcess | None = None

    def _classpath(self) -> str:
        return str(self.libs / "*")

    def _format(self, attempts: int = 3) -> None:
        """``kafka.tools.StorageTool format`` the data dir (a new cluster id)."""
        self.cluster_id = format_storage(self.java, self._classpath(), self.properties, self.data_dir,
                                         new_cluster_id(), attempts=attempts)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def start(self) -> float:
        """Start (or start again) and wait until it answers a metadata request."""
        t0 = time.monotonic()
        ensure_port_free(self.port)
        self.proc = GuardedProcess(
            [self.java, *JVM_OPTS, "-cp", self._classpath(), "kafka.Kafka", str(self.properties)],
            log_path=self.log_path, cwd=self.workdir, name=f"kafka {self.version}",
        )
        self.proc.start()
        try:
            # ready when *this* cluster answers: with two brokers starting at once, the other
            # one can take the port between our check and our bind, and would answer here
            self.proc.wait_ready(self.bootstrap, self.start_timeout_s, cluster_id=self.cluster_id)
        except BrokerExited as exc:
            if "Address already in use" in log_tail(self.log_path, 200):
                from .errors import PortInUse

                raise PortInUse(f"port 127.0.0.1:{self.port} or {self.controller_port} was taken "
                                f"while Kafka started; start again (ports are random)") from exc
            raise
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def restart(self, *, down_s: float = 0.0) -> float:
        self.stop()
        if down_s:
            time.sleep(down_s)
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def handle(self, cold_start_s: float) -> BrokerHandle:
        return BrokerHandle(
            kind=self.kind, bootstrap_servers=self.bootstrap, version=self.version,
            log_path=self.log_path,
            capabilities=frozenset({Capability.CONFIGURABLE, Capability.RESTARTABLE, Capability.PERSISTENT}),
            cold_start_s=cold_start_s, settings=dict(self.settings), _impl=self,
        )
