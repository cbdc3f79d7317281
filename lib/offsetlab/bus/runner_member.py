"""The consumer runner's thread: one group member's life, on the thread that owns it.

:class:`MemberThread` is the runner-thread half of
:class:`~offsetlab.bus.runner.ConsumerRunner`: build a
:class:`~offsetlab.bus.ports.ConsumerClient` through the transport, subscribe, poll, hand
batches to the handler, commit ``offset + 1`` of contiguous settled records, turn rebalance
notes into lifecycle events, and on a crash close and restart (or end) as the crash policy
says. Nothing here is called from another thread; the public half queues commands for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

from offsetlab.bus.batch import BatchContext
from offsetlab.bus.config import RunnerConfig
from offsetlab.bus.errors import JoinFailed, TransactionAborted
from offsetlab.bus.join import JoinHandle
from offsetlab.bus.lifecycle import (
    Commit,
    Connect,
    Crash,
    Disconnect,
    GroupJoin,
    LifecycleEvent,
    Pause,
    Rebalance,
    RebalancePhase,
    Resume,
    RunnerState,
    Stop,
)
from offsetlab.bus.ports import CommitRebalanced, ConsumerClient, TransactionClient, Transport
from offsetlab.bus.runner_notes import _Notes
from offsetlab.bus.types import Record, TopicPartition, sorted_partitions

__all__ = ["MemberThread", "MessageHandler", "BatchHandler", "TickHook", "ConsumerFactory",
           "_Notes"]

_log = logging.getLogger("offsetlab.bus.runner")

MessageHandler = Callable[[Record], object]
BatchHandler = Callable[[list[Record], BatchContext], object]
TickHook = Callable[[BatchContext], object]
ConsumerFactory = Callable[..., Any]


def _partitions(tps: Iterable[Any], what: str) -> tuple[TopicPartition, ...]:
    out = []
    for tp in tps:
        if not (isinstance(tp, tuple) and len(tp) == 2 and isinstance(tp[0], str)
                and isinstance(tp[1], int)):
            raise TypeError(f"{what}() takes TopicPartition values, got {tp!r}")
        out.append(TopicPartition(tp[0], tp[1]))
    return tuple(out)


class MemberThread:
    """The runner-thread half of :class:`~offsetlab.bus.runner.ConsumerRunner`."""

    # set by ConsumerRunner.__init__
    config: RunnerConfig
    name: str
    _handler: MessageHandler | None
    _batch_handler: BatchHandler | None
    _factory: ConsumerFactory | None
    _transport: Transport
    _on_tick: TickHook | None
    _txn: TransactionClient | None
    _txn_metadata: Any
    _lock: threading.RLock
    _state: RunnerState
    _handle: JoinHandle
    _stop_requested: threading.Event
    _commands: deque[tuple[Callable[[], None], Future[None]]]
    _requested_paused: set[TopicPartition]
    _assignment: frozenset[TopicPartition]
    _consumer: ConsumerClient | None
    _notes: _Notes | None
    _committed: dict[TopicPartition, int]
    _pending_commit: dict[TopicPartition, int]
    _incarnation: int
    _restarts: int
    _joined: bool
    _subscribed_at: float
    _listeners: tuple[Callable[[LifecycleEvent], object], ...]
    last_error: BaseException | None

    def paused(self) -> frozenset[TopicPartition]:
        """Partitions paused by request (kept paused across rebalances until resumed)."""
        with self._lock:
            return frozenset(self._requested_paused)

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions assigned at the last rebalance the runner thread processed."""
        with self._lock:
            return self._assignment

    def _set_state(self, state: RunnerState) -> None:
        with self._lock:
            self._state = state

    def _emit(self, event: LifecycleEvent) -> None:
        with self._lock:
            listeners = self._listeners
        for listener in listeners:
            try:
                listener(event)
            except Exception:
                _log.exception("runner %s: lifecycle listener %r raised on %s", self.name,
                               listener, event.kind.value)

    def _drain_commands(self) -> None:
        while self._commands:
            fn, future = self._commands.popleft()
            self._run_command(fn, future)

    @staticmethod
    def _run_command(fn: Callable[[], None], future: Future[None]) -> None:
        try:
            fn()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    def _ended_error(self) -> BaseException:
        raise NotImplementedError

    def _fail_commands(self) -> None:
        while self._commands:
            _, future = self._commands.popleft()
            if not future.done():
                future.set_exception(self._ended_error())

    # ----------------------------------------------------------------- runner-thread operations
    def _assigned_now(self) -> set[TopicPartition]:
        if self._consumer is None:
            return set()
        return set(self._consumer.assignment())

    def _do_pause(self, tps: tuple[TopicPartition, ...]) -> None:
        tps = _partitions(tps, "pause")
        with self._lock:
            self._requested_paused.update(tps)
        live = [tp for tp in tps if tp in self._assigned_now()]
        if live:
            assert self._consumer is not None
            self._consumer.pause(live)
        if tps:
            self._emit(Pause(at=time.monotonic(), runner=self.name,
                             partitions=sorted_partitions(tps)))

    def _do_resume(self, tps: tuple[TopicPartition, ...]) -> None:
        tps = _partitions(tps, "resume")
        with self._lock:
            self._requested_paused.difference_update(tps)
        live = [tp for tp in tps if tp in self._assigned_now()]
        if live:
            assert self._consumer is not None
            self._consumer.resume(live)
        if tps:
            self._emit(Resume(at=time.monotonic(), runner=self.name,
                              partitions=sorted_partitions(tps)))

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        if tp in self._assigned_now():
            assert self._consumer is not None
            self._consumer.seek(TopicPartition(tp[0], tp[1]), offset)
        else:
            _log.info("runner %s: not seeking %s to %d: no longer assigned", self.name, tp, offset)

    def _commit(self, positions: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Commit ``positions`` that move forward; emit Commit; return what was committed."""
        if self._txn is not None:
            return self._commit_transaction(positions)
        for tp, off in positions.items():
            if off > max(self._committed.get(tp, -1), self._pending_commit.get(tp, -1)):
                self._pending_commit[tp] = off
        assigned = self._assigned_now()
        todo = {tp: off for tp, off in self._pending_commit.items() if tp in assigned}
        if not todo:
            return {}
        assert self._consumer is not None
        try:
            self._consumer.commit(todo)
        except CommitRebalanced as exc:
            _log.warning("runner %s: commit %s failed because the group rebalanced (%s); the "
                         "records will be delivered again", self.name, todo, exc)
            for tp in todo:
                self._pending_commit.pop(tp, None)
            return {}
        for tp, off in todo.items():
            self._committed[tp] = off
            self._pending_commit.pop(tp, None)
        self._emit(Commit(at=time.monotonic(), runner=self.name, offsets=dict(todo)))
        return todo

    def _commit_transaction(self, positions: dict[TopicPartition, int],
                            batch: BatchContext | None = None) -> dict[TopicPartition, int]:
        """Transactional mode: add the positions that move forward to the open transaction
        and commit it (also with no offsets: the batch's writes). If it aborted, seek every
        partition of ``batch`` back to its first record (delivered again) and return {}."""
        txn = self._txn
        assert txn is not None and self._consumer is not None
        if not txn.in_transaction():
            return {}
        assigned = self._assigned_now()
        todo = {tp: off for tp, off in positions.items()
                if tp in assigned and off > self._committed.get(tp, -1)}
        try:
            txn.commit(todo, self._txn_metadata)
        except TransactionAborted as exc:
            _log.warning("runner %s: %s; the batch is delivered again", self.name, exc)
            if batch is not None:
                for tp, first in batch.first_offsets().items():
                    self._seek(tp, first)
            return {}
        if not todo:
            return {}
        for tp, off in todo.items():
            self._committed[tp] = off
        self._emit(Commit(at=time.monotonic(), runner=self.name, offsets=dict(todo)))
        return todo

    def _process_notes(self) -> None:
        notes = self._notes
        while notes is not None and notes.notes:
            phase, at, tps, extra = notes.notes.popleft()
            ph: RebalancePhase = phase  # type: ignore[assignment]
            if phase in ("revoked", "lost"):
                if not tps:  # kafka-python revokes "nothing" before every first join: noise
                    continue
                for tp in tps:
                    self._pending_commit.pop(tp, None)
                    self._committed.pop(tp, None)
                with self._lock:
                    self._assignment = self._assignment - frozenset(tps)
                self._emit(Rebalance(at=at, runner=self.name, phase=ph, partitions=tps))
                continue
            full: tuple[TopicPartition, ...] = extra.get("full", tps)
            with self._lock:
                self._assignment = frozenset(full)
            for tp in tps:
                self._committed.pop(tp, None)
            self._emit(Rebalance(at=at, runner=self.name, phase=ph, partitions=tps))
            if not self._joined:
                self._joined = True
                join = GroupJoin(
                    at=at, runner=self.name, member_id=extra.get("member_id", ""),
                    generation=extra.get("generation", -1), assignment=full,
                    duration_s=at - self._subscribed_at, incarnation=self._incarnation,
                )
                self._set_state(RunnerState.RUNNING)
                self._emit(join)
                self._handle._succeed(join)
            if extra.get("repaused"):
                self._emit(Pause(at=at, runner=self.name, partitions=extra["repaused"],
                                 reapplied=True))

    # ------------------------------------------------------------------------------ batches
    def _handle_records(self, records: Sequence[Record]) -> None:
        ctx = BatchContext(self, records)
        if self._txn is not None:
            assert self._consumer is not None
            self._txn.begin()
            # the membership the batch was fetched under: its offsets are committed with it
            self._txn_metadata = self._consumer.transaction_metadata()
        try:
            if self._batch_handler is not None:
                self._batch_handler(list(records), ctx)
            else:
                assert self._handler is not None
                for record in records:
                    if ctx.skipped(record):
                        continue
                    self._handler(record)
                    ctx.settle(record)
        except BaseException:
            try:
                self._finish_batch(ctx)
            except Exception:  # the handler's error is the crash; this one is only logged
                _log.exception("runner %s: finishing a failed batch raised", self.name)
            raise
        self._finish_batch(ctx)

    def _finish_batch(self, ctx: BatchContext) -> None:
        for tp, offset in ctx.first_unsettled().items():
            if tp not in ctx._sought:
                self._seek(tp, offset)
        if self._txn is not None:
            self._commit_transaction(ctx.commit_positions(), ctx)
        else:
            self._commit(ctx.commit_positions())

    # ------------------------------------------------------------------------------ thread
    def _main(self) -> None:
        try:
            while True:
                error = self._incarnation_loop()
                if error is None:
                    return
                if not self._after_crash(error):
                    return
        except BaseException as exc:  # a bug in the runner itself: never die silently
            _log.exception("runner %s: internal error", self.name)
            self._set_state(RunnerState.CRASHED)
            self._handle._fail(self._join_failed(exc))
            consumer, self._consumer = self._consumer, None
            if consumer is not None:
                try:
                    consumer.close(timeout_ms=self.config.close_timeout_ms)
                except Exception:
                    _log.exception("runner %s: close() after internal error raised", self.name)
        finally:
            self._fail_commands()

    def _join_failed(self, exc: BaseException) -> JoinFailed:
        detail = str(exc)
        if not detail.startswith(type(exc).__name__):
            detail = f"{type(exc).__name__}: {detail}"
        failed = JoinFailed(
            f"runner {self.name!r} could not join group {self.config.group_id!r} on "
            f"{self.config.bootstrap_servers} for topics {list(self.config.topics)}: {detail}"
        )
        failed.__cause__ = exc
        return failed

    def _incarnation_loop(self) -> BaseException | None:
        """Build a consumer, subscribe, poll until stop (None) or an error (returned)."""
        self._incarnation += 1
        self._joined = False
        self._set_state(RunnerState.STARTING)
        try:
            if self._stop_requested.is_set():
                self._graceful_stop()
                return None
            consumer = self._transport.open_consumer(self.config, self._factory)
            self._consumer = consumer
        except BaseException as exc:
            self._consumer = None
            return exc
        self._emit(Connect(at=time.monotonic(), runner=self.name, incarnation=self._incarnation))
        try:
            self._notes = _Notes(self, consumer)
            self._subscribed_at = time.monotonic()
            consumer.subscribe(self.config.topics, self._notes)
            while True:
                self._drain_commands()
                if self._stop_requested.is_set():
                    self._graceful_stop()
                    return None
                if self._pending_commit:
                    self._commit({})
                timeout = (self.config.poll_timeout_ms if self._joined
                           else self.config.join_poll_timeout_ms)
                polled = consumer.poll(timeout)
                self._process_notes()
                if polled:
                    self._handle_records(polled)
                if self._on_tick is not None:
                    self._on_tick(BatchContext(self, ()))
        except BaseException as exc:  # KeyboardInterrupt in a handler too: close, never restart
            self._process_notes_safely()
            return exc

    def _process_notes_safely(self) -> None:
        try:
            self._process_notes()
        except Exception:
            _log.exception("runner %s: could not process rebalance notes", self.name)

    def _close_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            consumer.close(timeout_ms=self.config.close_timeout_ms)
        except Exception:
            _log.exception("runner %s: close() raised", self.name)
        # the close-time on_partitions_revoked/lost notes, without touching the closed consumer
        self._consumer = None
        self._process_notes_safely()
        with self._lock:
            self._assignment = frozenset()
        self._emit(Disconnect(at=time.monotonic(), runner=self.name,
                              incarnation=self._incarnation))

    def _graceful_stop(self) -> None:
        self._set_state(RunnerState.STOPPING)
        if self._consumer is not None and self._pending_commit:
            try:
                self._commit({})
            except Exception:
                _log.exception("runner %s: final commit failed", self.name)
        self._emit(Stop(at=time.monotonic(), runner=self.name))
        self._close_consumer()
        self._set_state(RunnerState.STOPPED)
        self._handle._fail(JoinFailed(
            f"runner {self.name!r} was stopped before it joined group {self.config.group_id!r}"
        ))

    def _after_crash(self, error: BaseException) -> bool:
        """Emit Crash, close, and either restart (True) or end CRASHED (False)."""
        self.last_error = error
        during_join = not self._joined
        first_join = not self._handle.done()
        if (first_join or self._stop_requested.is_set()
                or getattr(error, "restartable", True) is False):
            restart = False
        else:
            restart = self.config.crash_policy.decide(error, self._restarts)
        _log.warning("runner %s crashed (%s: %s); restart=%s", self.name,
                     type(error).__name__, error, restart)
        self._emit(Crash(at=time.monotonic(), runner=self.name, error=error, restart=restart,
                         restarts=self._restarts, during_join=during_join))
        self._close_consumer()
        if not restart:
            if self._stop_requested.is_set() and not first_join:
                self._set_state(RunnerState.STOPPED)
            else:
                self._set_state(RunnerState.CRASHED)
            self._handle._fail(self._join_failed(error))
            return False
        self._restarts += 1
        self._set_state(RunnerState.STARTING)
        backoff = self.config.crash_policy.backoff_for(self._restarts)
        if self._stop_requested.wait(backoff):
            self._emit(Stop(at=time.monotonic(), runner=self.name))
            self._set_state(RunnerState.STOPPED)
            return False
        return True
