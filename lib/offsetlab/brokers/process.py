"""A broker process run under :mod:`guard`, with readiness checked by a metadata request."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import BrokerExited, BrokerStartTimeout, PortInUse

log = logging.getLogger(__name__)
GUARD = Path(__file__).with_name("guard.py")


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (bind to 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ensure_port_free(port: int, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortInUse(
                f"port {host}:{port} is already in use ({exc.strerror}); pick another port "
                f"or stop what listens there (`ss -ltnp 'sport = :{port}'`)"
            ) from None


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def metadata_answers(bootstrap: str, timeout_s: float = 2.0, client_config: dict | None = None,
                     *, cluster_id: str | None = None) -> bool:
    """True when the broker answers a metadata request (not just an open port); with
    ``cluster_id``, only when the cluster that answers is that one (not another broker that
    took the port while this one started)."""
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            **(client_config or {}),
        )
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False
    try:
        cluster = admin.describe_cluster()
        if cluster_id is not None and cluster.get("cluster_id") != cluster_id:
            return False
        return bool(cluster.get("brokers"))
    except Exception:  # noqa: BLE001
        return False
    finally:
        try:
            admin.close()
        except Exception:  # noqa: BLE001
            pass


def _ppid(pid: str) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class GuardedProcess:
    """One broker command run under the guard; stops with its parent, whatever happens."""

    def __init__(self, cmd: Sequence[str], *, log_path: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None, name: str = "broker") -> None:
        self.cmd = list(cmd)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, str(GUARD), str(self.log_path), "--", *self.cmd],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=self.cwd, env={**os.environ, **(self.env or {})}, start_new_session=True,
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, bootstrap: str, timeout_s: float, *, extra_check=None,
                   cluster_id: str | None = None) -> float:
        """Poll until a metadata request succeeds (answered by ``cluster_id`` when given);
        return seconds waited."""
        start = time.monotonic()
        deadline = start + timeout_s
        while True:
            if not self.running:
                code = self.proc.returncode if self.proc else None
                raise BrokerExited(
                    f"{self.name} exited with status {code} while starting; see {self.log_path}",
                    log_tail=log_tail(self.log_path),
                )
            if metadata_answers(bootstrap, timeout_s=1.0, cluster_id=cluster_id) and (
                    extra_check is None or extra_check()):
                return time.monotonic() - start
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerStartTimeout(
                    f"{self.name} at {bootstrap} did not answer a metadata request within "
                    f"{timeout_s:.0f} s; see {self.log_path}\n{log_tail(self.log_path)}"
                )
            time.sleep(0.2)

    @property
    def child_pid(self) -> int | None:
        """The pid of the command itself (the guard's child, e.g. the JVM), or None when it
        is not running. The guard starts it in a process group of its own (pgid = its pid)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None
        try:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            children = [pid for pid in os.listdir("/proc") if pid.isdigit() and _ppid(pid) == proc.pid]
        return int(children[0]) if children else None

    def terminate(self) -> None:
        """Ask the guard to stop the command (SIGTERM), without waiting: :meth:`stop` waits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def kill(self, timeout_s: float = 10.0) -> int | None:
        """SIGKILL the command itself (its process group), not the guard: the guard sees its
        child die, does not restart it and exits with its status, which is reaped here."""
        proc = self.proc
        if proc is None:
            return None
        pid = self.child_pid
        if pid is not None:
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:  # no child found, or a guard that hangs
            os.killpg(proc.pid, 9)
            proc.wait(5)
        return self.stop()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM the guard (which stops the broker, SIGKILL after a grace) and reap it."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(5)
        if proc.stdin:
            try:
                proc.stdin.close()
            except OSError:
                pass
        return proc.returncode
