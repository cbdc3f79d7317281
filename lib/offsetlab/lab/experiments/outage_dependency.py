"""The outage's dependency: a small TCP service on 127.0.0.1 that is down for a while.

Clients know only what a real service's clients know: :meth:`Dependency.call` (the handlers'
call) and :meth:`Dependency.probe` (a retrier's health check) open a connection with a
timeout, send one line and wait for ``ok``; a refused or reset connection, no answer in time,
or a closed connection without an answer is :class:`DependencyDown`. Neither reads the
outage's schedule.

The schedule belongs to the service side alone (:meth:`Dependency.schedule`, set by
:func:`~offsetlab.lab.experiments.outage_run.run_outage`): while down, the server accepts a
connection and resets it at once (``SO_LINGER`` 0) without answering, as a crashed process
behind a load balancer does. :meth:`Dependency.down_at` is that schedule, for tests and for the
timeline's shaded interval; no pipeline calls it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

__all__ = ["DependencyDown", "Dependency"]


class DependencyDown(ConnectionError):
    """The dependency refused the call: it is down (retriable: a ``ConnectionError``)."""


class Dependency:
    """A dependency served over TCP on 127.0.0.1; down between two ``time.monotonic()``
    instants. ``timeout_s``: the clients' connect-and-answer timeout. Close it when done
    (:meth:`close`, or use it as a context manager)."""

    def __init__(self, *, timeout_s: float = 1.0) -> None:
        self.down_from = float("inf")
        self.down_until = float("inf")
        self.timeout_s = timeout_s
        self.calls = 0
        self.refused = 0
        self.probes = 0
        self.probes_failed = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._server.settimeout(0.05)
        self.address: tuple[str, int] = self._server.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, name="outage-dependency", daemon=True)
        self._thread.start()

    # -- the service side -------------------------------------------------------------------
    def schedule(self, down_from: float, down_until: float) -> None:
        self.down_from, self.down_until = down_from, down_until

    def down_at(self, now: float | None = None) -> bool:
        """Whether the *service* is down at ``now`` (its own schedule; clients never ask)."""
        now = time.monotonic() if now is None else now
        return self.down_from <= now < self.down_until

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                if self.down_at():
                    # reset at once, no answer: the client sees ECONNRESET (or EOF)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue
                conn.settimeout(self.timeout_s)
                with contextlib.suppress(OSError):
                    conn.recv(64)
                    conn.sendall(b"ok\n")

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Dependency:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the clients' side ------------------------------------------------------------------
    def _request(self, what: bytes) -> None:
        try:
            with socket.create_connection(self.address, timeout=self.timeout_s) as sock:
                sock.sendall(what + b"\n")
                answer = sock.recv(16)
        except OSError as exc:  # refused, reset, timed out
            raise DependencyDown(f"dependency down ({type(exc).__name__}: {exc})") from exc
        if not answer.startswith(b"ok"):
            raise DependencyDown("dependency down (connection closed without an answer)")

    def call(self) -> None:
        """The handlers' call: raises :class:`DependencyDown` when the service does not answer."""
        with self._lock:
            self.calls += 1
        try:
            self._request(b"call")
        except DependencyDown:
            with self._lock:
                self.refused += 1
            raise

    def probe(self) -> bool:
        """A health check as a real retrier makes one: the same request with the same
        timeout; True when the service answered."""
        with self._lock:
            self.probes += 1
        try:
            self._request(b"health")
        except DependencyDown:
            with self._lock:
                self.probes_failed += 1
            return False
        return True
