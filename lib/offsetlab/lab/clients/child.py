"""The parent's side of a member: :class:`ChildMember` starts the child process of a
:class:`~offsetlab.lab.clients.protocol.MemberConfig`, sends it commands and turns its events
into timeline rows.

Every event is kept (:attr:`ChildMember.events`, in arrival order) and recorded on the
timeline as a row ``who=config.who, what=event`` at the child's own time (its wall clock,
mapped onto the timeline's monotonic clock when the line arrives: the pipe's latency is well
under a millisecond), with ``topic``/``partition``/``offset``/``key`` where the event has them
and the rest (``client`` included) in ``detail``.

No orphans: the child gets ``PR_SET_PDEATHSIG=SIGKILL`` (it dies when the thread that started
it dies: start members from a thread that outlives them, e.g. the notebook's main thread or
the scenario's own thread that also stops them), and it exits by itself when its stdin reaches
EOF, which happens when this process dies for any reason. :meth:`ChildMember.close` (also
``with``) stops it on every exit path: ``stop`` command, then SIGKILL after a grace period.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from offsetlab.lab.clients.protocol import COMMANDS, EVENTS, MemberConfig
from offsetlab.lab.timeline_core import Timeline

log = logging.getLogger(__name__)

__all__ = ["ChildMember", "MemberTimeout", "child_command", "Event"]

Event = dict[str, Any]
_ROW_FIELDS = ("topic", "partition", "offset", "key")


class MemberTimeout(TimeoutError):
    """An awaited event did not come in time; the message names the member and its log."""


def _pdeathsig() -> None:  # between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def child_command(config: MemberConfig) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment of ``config``'s child process."""
    if config.client == "kafkajs":
        from offsetlab.lab.clients import node
        return node.child_command()
    return [sys.executable, "-u", "-m", "offsetlab.lab.clients.pymember"], {}


class ChildMember:
    """One member in its own process; see the module docstring."""

    def __init__(self, config: MemberConfig, timeline: Timeline | None = None, *,
                 log_dir: Path | str | None = None,
                 on_event: Callable[[Event], None] | None = None) -> None:
        self.config = config
        self.timeline = timeline if timeline is not None else Timeline()
        self.who = config.who
        self.log_path = Path(log_dir) / f"{config.who}.stderr.log" if log_dir else None
        self.events: list[Event] = []
        self._cond = threading.Condition()
        self._on_event = on_event
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | int = subprocess.DEVNULL
        self._reader: threading.Thread | None = None
        self.exit_code: int | None = None
        self.started_at: float | None = None   # time.monotonic() at spawn

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> ChildMember:
        cmd, env = child_command(self.config)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._stderr = open(self.log_path, "ab")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env={**os.environ, **env},
                                     preexec_fn=_pdeathsig)
        self._reader = threading.Thread(target=self._read, name=f"member-{self.who}", daemon=True)
        self._reader.start()
        self._write(self.config.to_json())
        return self

    def __enter__(self) -> ChildMember:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, cmd: str, **fields: Any) -> None:
        if cmd not in COMMANDS:
            raise ValueError(f"unknown command {cmd!r}; one of {COMMANDS}")
        self._write(json.dumps({"cmd": cmd, **fields}))

    def pause(self, partitions: list[int] | None = None) -> None:
        self.send("pause", partitions=partitions)

    def resume(self, partitions: list[int] | None = None) -> None:
        self.send("resume", partitions=partitions)

    def dependency(self, up: bool) -> None:
        self.send("dependency", up=up)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Leave the group cleanly and wait for the process to exit (SIGKILL after
        ``timeout_s``); returns its exit status."""
        if self.proc is None:
            return None
        if self.alive:
            try:
                self.send("stop")
            except (BrokenPipeError, OSError):
                pass
        try:
            self.exit_code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("member %s did not stop within %.0f s: killing it", self.who, timeout_s)
            self.kill()
        self._finish()
        return self.exit_code

    def kill(self) -> None:
        """SIGKILL the child: no LeaveGroup, no commit, no close."""
        if self.proc is None:
            return
        if self.alive:
            self.timeline.record(self.who, "killed", detail={"client": self.config.client})
            self.proc.kill()
        self.exit_code = self.proc.wait()
        self._finish()

    def close(self, timeout_s: float = 10.0) -> None:
        if self.proc is not None and self.exit_code is None:
            self.stop(timeout_s)
        self._finish()

    def _finish(self) -> None:
        if self._reader is not None:
            self._reader.join(5)
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if not isinstance(self._stderr, int):
            self._stderr.close()
            self._stderr = subprocess.DEVNULL

    # -- events --------------------------------------------------------------------------
    def _write(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                ev = json.loads(raw)
                if not isinstance(ev, dict) or ev.get("event") not in EVENTS:
                    raise ValueError("not an event")
            except ValueError:
                log.warning("member %s printed a line that is not an event: %r", self.who, raw[:200])
                continue
            try:
                self._record(ev)
            except Exception:  # into the log, not a thread traceback on the notebook's stderr
                log.exception("member %s: could not record %r", self.who, ev)
        with self._cond:
            self._cond.notify_all()

    def _record(self, ev: Event) -> None:
        at_wall = float(ev.get("at") or time.time())
        at = time.monotonic() - max(0.0, time.time() - at_wall)
        fields = {k: ev.get(k) for k in _ROW_FIELDS}
        detail = {k: v for k, v in ev.items() if k not in (*_ROW_FIELDS, "event", "at")}
        self.timeline.record(self.who, str(ev["event"]), at=at, detail=detail, **fields)
        ev = {**ev, "t": self.timeline.to_t(at)}
        with self._cond:
            self.events.append(ev)
            self._cond.notify_all()
        if self._on_event is not None:
            self._on_event(ev)

    def seen(self, event: str, where: Callable[[Event], bool] | None = None) -> list[Event]:
        """The events of kind ``event`` so far (those ``where`` accepts)."""
        with self._cond:
            return [e for e in self.events if e["event"] == event and (where is None or where(e))]

    def wait_for(self, event: str, where: Callable[[Event], bool] | None = None, *,
                 timeout_s: float = 60.0, count: int = 1) -> Event:
        """Block until ``count`` events of kind ``event`` (accepted by ``where``) arrived;
        returns the last of them. Raises :class:`MemberTimeout` (naming the member, the
        event and the stderr log) when they do not come in ``timeout_s`` or the child exits."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                hits = [e for e in self.events if e["event"] == event and (where is None or where(e))]
                if len(hits) >= count:
                    return hits[count - 1]
                left = deadline - time.monotonic()
                reader_done = self._reader is not None and not self._reader.is_alive()
                if left <= 0 or reader_done:
                    why = "exited" if reader_done else f"not within {timeout_s:.0f} s"
                    raise MemberTimeout(f"member {self.who} ({self.config.client}): {count} "
                                        f"'{event}' event(s) {why}; got {len(hits)}; stderr: "
                                        f"{self.log_path or 'not kept'}")
                self._cond.wait(min(left, 0.5))

    def holds(self) -> set[tuple[str, int]]:
        """The partitions this member holds now, by its own assigned/revoked/lost events."""
        held: set[tuple[str, int]] = set()
        with self._cond:
            for e in self.events:
                parts = {(t, int(p)) for t, p in e.get("partitions") or []}
                if e["event"] == "assigned":
                    held |= parts
                elif e["event"] in ("revoked", "lost"):
                    held -= parts
        return held
