"""The poll loop of a Python member (kafka-python or confluent-kafka), client-independent.

One thread runs everything that touches the client: :meth:`MemberLoop.run` polls (about
100 ms a poll), drains the commands the stdin reader queued between polls and between
records, hands every record to the :class:`Handler` and commits per the commit mode. The
client's side is an *adapter* (:mod:`~offsetlab.lab.clients.pymember_kafka_python`,
:mod:`~offsetlab.lab.clients.pymember_confluent`) with the small interface of
:class:`Adapter`.

What the loop does (the same for both clients):

- ``style`` ``message`` and ``batch`` both take the records of one poll, grouped by partition
  in offset order: a Python client has no per-message runner, so the two styles produce the
  same events here (``batch`` is the E03 idiom: commit per the commit mode after each record,
  and on a failure the rest of that partition's records of the poll are not handled).
- **A failed record** (``handler_failed``): neither Python client retries a handler (they
  have no handler: the application loops over ``poll()``), so the member does it by hand.
  ``throw``: seek the partition back to the failed record (``seek``), drop the rest of its
  records of this poll; the next poll delivers it again. ``pause_and_seek`` /
  ``pause_and_throw`` (the same here): pause the partition, seek back, resume it by itself
  ``retry_after_s`` later. ``skip``: go on with the next record (no commit for the failed
  one: the next success commits past it). ``return`` (``style`` ``batch``): stop handling
  the rest of that partition's records of this poll, without a seek (the position stays
  past them, as ``poll()`` left it); with ``style`` ``message`` it is ``skip``.
- **A pause command** while a poll's records are being handled: the paused partitions'
  remaining records are not handled; the member seeks back to the first of them (``seek``)
  so that nothing is lost when it resumes.
- **A stop command during the handler's sleep** (``sleep_s``, ``block_first_s``) ends the
  sleep: that record is neither handled nor committed and the member leaves at once (other
  commands wait until the handler returns, as between records).
- **Commits** after each handled record: ``idiomatic``, ``message_offset``,
  ``offset_plus_one`` through the adapter (``commit`` events after the broker accepted;
  ``commit_failed`` otherwise); ``auto`` commits are the client's, reported by the adapter
  where the client has a callback for them; ``none`` never commits.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from offsetlab.lab.clients.protocol import HandlerSpec, MemberConfig

__all__ = ["Rec", "Handler", "DependencyDown", "HandlerFailure", "StopRequested", "Adapter",
           "MemberLoop",
           "describe", "group_by_partition", "text", "Emit", "POLL_S"]

log = logging.getLogger(__name__)

POLL_S = 0.1
TP = tuple[str, int]
Emit = Callable[..., None]


def describe(exc: BaseException) -> str:
    """``"ClassName: message"`` (the protocol's ``error`` field)."""
    return f"{type(exc).__name__}: {exc}"


def text(raw: bytes | str | None) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    return raw.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Rec:
    """One consumed record, whatever the client (``raw``: the client's own object)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: str | None
    raw: Any = None

    @property
    def tp(self) -> TP:
        return (self.topic, self.partition)


def group_by_partition(records: Iterable[Rec]) -> dict[TP, list[Rec]]:
    """The records of one poll by partition (first-seen partition order), each in offset order."""
    groups: dict[TP, list[Rec]] = {}
    for rec in records:
        groups.setdefault(rec.tp, []).append(rec)
    return {tp: sorted(recs, key=lambda r: r.offset) for tp, recs in groups.items()}


class DependencyDown(Exception):
    """The handler's dependency is down (command ``dependency`` with ``up: false``)."""


class HandlerFailure(Exception):
    """The handler failed on a value of ``HandlerSpec.fail_values``."""


class Handler:
    """The member's handler: sleeps, fails and counts attempts as :class:`HandlerSpec` says."""

    def __init__(self, spec: HandlerSpec, sleep: Callable[[float], None] = time.sleep) -> None:
        self.spec = spec
        self.dependency_up = spec.dependency_up
        self.failures: Counter[str | None] = Counter()
        self.attempts: Counter[tuple[str, int, int]] = Counter()
        self._first = True
        self._sleep = sleep

    def attempt_of(self, rec: Rec) -> int:
        return self.attempts[(rec.topic, rec.partition, rec.offset)]

    def __call__(self, rec: Rec) -> None:
        """Handle ``rec``; raises :class:`DependencyDown` or :class:`HandlerFailure`."""
        self.attempts[(rec.topic, rec.partition, rec.offset)] += 1
        if self._first:
            self._first = False
            if self.spec.block_first_s > 0:
                self._sleep(self.spec.block_first_s)
        if self.spec.sleep_s > 0:
            self._sleep(self.spec.sleep_s)
        if not self.dependency_up:
            raise DependencyDown(f"dependency down at offset {rec.offset}")
        if rec.value in self.spec.fail_values and (
                self.spec.fail_times < 0 or self.failures[rec.value] < self.spec.fail_times):
            self.failures[rec.value] += 1
            raise HandlerFailure(f"value {rec.value!r} fails (failure {self.failures[rec.value]})")


class StopRequested(BaseException):
    """A ``stop`` command came while the handler slept: the handler is abandoned."""


class Adapter(Protocol):
    """What the loop needs from a client (see the two adapter modules)."""

    assigned_once: bool   # set by the client's assignment callback
    fatal: str | None     # set when the client reported a fatal error outside poll()

    def start(self) -> None: ...          # build the client, emit ready, subscribe
    def poll(self, timeout_s: float) -> list[Rec]: ...
    def held(self) -> list[TP]: ...
    def pause(self, tps: list[TP]) -> None: ...
    def resume(self, tps: list[TP]) -> None: ...
    def seek(self, tp: TP, offset: int) -> None: ...
    def blocked(self, tp: TP) -> bool: ...  # a seek of tp is not applied yet: drop its records
    def commit(self, rec: Rec, mode: str) -> dict[TP, int]: ...  # committed next offsets
    def close(self) -> None: ...


class MemberLoop:
    """The member's single client thread; :meth:`run` returns the exit status."""

    def __init__(self, config: MemberConfig, adapter: Adapter, emit: Emit,
                 commands: queue.Queue[dict[str, Any]], *,
                 handler: Handler | None = None, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.config = config
        self.adapter = adapter
        self.emit = emit
        self.commands = commands
        self.handler = handler or Handler(config.handler, self.sleep)
        self.deferred: list[dict[str, Any]] = []   # commands that came during a handler's sleep
        self.clock = clock
        self.resume_at: dict[TP, float] = {}
        self.paused_now: set[TP] = set()   # paused since the current poll returned
        self.returned = False

    # -- lifecycle ---------------------------------------------------------------------
    def run(self) -> int:
        try:
            self.adapter.start()
        except Exception as exc:
            log.exception("the client did not start")
            self.emit("error", where="start", error=describe(exc), fatal=True)
            self.emit("stopped", clean=False)
            return 1
        self.emit("run_called")
        while True:
            if self.drain():
                return self.stop()
            if self.adapter.fatal:
                return self.die()
            self.resume_due()
            try:
                records = self.adapter.poll(POLL_S)
            except Exception as exc:
                log.warning("poll raised", exc_info=True)
                self.emit("error", where="poll", error=describe(exc), fatal=False)
                time.sleep(POLL_S)
                continue
            if not self.returned and self.adapter.assigned_once:
                self.returned = True
                self.emit("run_returned", records=len(records))
            self.paused_now.clear()
            if self.process(records):
                return self.stop()

    def stop(self) -> int:
        try:
            self.adapter.close()
        except Exception as exc:
            self.emit("error", where="close", error=describe(exc), fatal=True)
            self.emit("stopped", clean=False)
            return 1
        self.emit("stopped", clean=True)
        return 0

    def die(self) -> int:
        try:
            self.adapter.close()
        except Exception:
            log.warning("close after a fatal error raised", exc_info=True)
        self.emit("stopped", clean=False)
        return 1

    # -- commands ----------------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """The handler's sleep: no poll meanwhile, but a ``stop`` command ends it
        (:class:`StopRequested`); other commands wait until the handler returns."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                command = self.commands.get(timeout=min(left, 0.05))
            except queue.Empty:
                continue
            if command.get("cmd") == "stop":
                raise StopRequested
            self.deferred.append(command)

    def drain(self) -> bool:
        """Apply the queued commands; True when one of them is ``stop``."""
        while True:
            if self.deferred:
                command = self.deferred.pop(0)
            else:
                try:
                    command = self.commands.get_nowait()
                except queue.Empty:
                    return False
            cmd = command.get("cmd")
            if cmd == "stop":
                return True
            if cmd == "dependency":
                self.handler.dependency_up = bool(command.get("up"))
            elif cmd in ("pause", "resume"):
                tps = self.chosen(command.get("partitions"))
                if cmd == "pause":
                    self.pause(tps, by="command")
                else:
                    self.resume(tps, by="command")
            else:
                log.warning("unknown command %r", command)

    def chosen(self, partitions: list[int] | None) -> list[TP]:
        """The held partitions of the subscribed topics a command names (``None``: all)."""
        held = [tp for tp in self.adapter.held() if tp[0] in self.config.topics]
        if partitions is None:
            return sorted(held)
        wanted = {int(p) for p in partitions}
        return sorted(tp for tp in held if tp[1] in wanted)

    def pause(self, tps: list[TP], *, by: str) -> None:
        if tps:
            self.adapter.pause(tps)
        self.paused_now.update(tps)
        for tp in tps:
            self.resume_at.pop(tp, None)
        self.emit("pause", partitions=[list(tp) for tp in tps], by=by)

    def resume(self, tps: list[TP], *, by: str) -> None:
        if tps:
            self.adapter.resume(tps)
        self.paused_now.difference_update(tps)
        for tp in tps:
            self.resume_at.pop(tp, None)
        self.emit("resume", partitions=[list(tp) for tp in tps], by=by)

    def resume_due(self) -> None:
        now = self.clock()
        due = sorted(tp for tp, at in self.resume_at.items() if at <= now)
        if due:
            held = set(self.adapter.held())
            gone = [tp for tp in due if tp not in held]
            for tp in gone:   # revoked while paused: nothing to resume
                del self.resume_at[tp]
            if len(gone) < len(due):
                self.resume([tp for tp in due if tp in held], by="handler")

    # -- records -----------------------------------------------------------------------
    def seek(self, tp: TP, offset: int) -> None:
        self.adapter.seek(tp, offset)
        self.emit("seek", topic=tp[0], partition=tp[1], offset=offset)

    def process(self, records: list[Rec]) -> bool:
        """Handle one poll's records; True when a ``stop`` command came meanwhile."""
        for tp, recs in group_by_partition(records).items():
            for rec in recs:
                if self.drain():
                    return True
                if self.adapter.blocked(tp):
                    break
                if tp in self.paused_now:   # a pause command came while handling this poll
                    self.seek(tp, rec.offset)
                    break
                try:
                    if not self.handle(rec):
                        break
                except StopRequested:
                    return True
        return False

    def handle(self, rec: Rec) -> bool:
        """Handle and commit one record; False when the rest of its partition's records of
        this poll must not be handled (the member sought back)."""
        try:
            self.handler(rec)
        except Exception as exc:
            self.emit("handler_failed", topic=rec.topic, partition=rec.partition,
                      offset=rec.offset, value=rec.value, error=describe(exc),
                      attempt=self.handler.attempt_of(rec))
            on_fail = self.config.handler.on_fail
            if on_fail == "skip" or (on_fail == "return" and self.config.style == "message"):
                return True
            if on_fail == "return":   # leave the batch at the failure, no seek
                return False
            if on_fail in ("pause_and_seek", "pause_and_throw"):
                self.pause([rec.tp], by="handler")
                self.resume_at[rec.tp] = self.clock() + self.config.handler.retry_after_s
            self.seek(rec.tp, rec.offset)
            return False
        self.emit("handled", topic=rec.topic, partition=rec.partition, offset=rec.offset,
                  key=rec.key, value=rec.value, attempt=self.handler.attempt_of(rec))
        self.commit(rec)
        return True

    def commit(self, rec: Rec) -> None:
        mode = self.config.commit
        if mode in ("auto", "none"):
            return
        try:
            committed = self.adapter.commit(rec, mode)
        except Exception as exc:
            log.warning("commit failed", exc_info=True)
            self.emit("commit_failed", topic=rec.topic, partition=rec.partition,
                      offset=rec.offset, error=describe(exc))
            return
        for (topic, partition), offset in sorted(committed.items()):
            self.emit("commit", topic=topic, partition=partition, offset=offset)
