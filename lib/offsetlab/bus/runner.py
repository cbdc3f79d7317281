"""The consumer runner: KafkaJS's ``consumer.run()`` shape on any client.

Neither kafka-python nor confluent-kafka has a ``run()``: ``subscribe()`` returns at once and
the group join happens inside ``poll()``. :class:`ConsumerRunner` owns one group member (a
:class:`~offsetlab.bus.ports.ConsumerClient` of the transport ``RunnerConfig.client`` names:
:mod:`offsetlab.bus.transports`) on its own thread (every consumer call happens there) and
gives the caller what the seed's adapter needs:

- :meth:`ConsumerRunner.start` returns at once with a :class:`JoinHandle` that completes when
  the first group join succeeds or fails (the *not awaited* caller of E01);
- :meth:`ConsumerRunner.run` is ``start()`` plus waiting for that handle (the *awaited*
  caller): it returns the :class:`~offsetlab.bus.lifecycle.GroupJoin` event or raises
  :class:`~offsetlab.bus.errors.JoinFailed` / :class:`~offsetlab.bus.errors.JoinTimeout`;
- :meth:`ConsumerRunner.stop` commits what is settled, leaves the group and closes;
- :meth:`ConsumerRunner.pause` / :meth:`ConsumerRunner.resume` keep polling, so the group
  keeps the member; paused partitions are re-paused when a rebalance hands them back;
- lifecycle events (:mod:`offsetlab.bus.lifecycle`) go to listeners on the runner thread.

Settling and committing
-----------------------
Commits are manual and always ``offset + 1`` of the highest *contiguous* settled record of a
partition (a committed offset is a position, not a set: E03). A **message handler**
``handler(record)`` settles its record by returning. A **batch handler**
``batch_handler(records, ctx)`` settles records with ``ctx.settle(record)``. At the end of
every batch (also when the handler raised) the runner, per partition of the batch:

1. commits ``last contiguous settled + 1`` if that moves the committed position forward;
2. if some records were not settled and the handler did not ``ctx.seek`` the partition
   itself, seeks back to the first unsettled offset, so those records (and any settled
   after the gap) are delivered again: at-least-once, never lost.

So between two polls the runner never holds settled-but-uncommitted offsets; that is why
a revocation needs no commit (kafka-python 3 runs rebalance listeners on its IO thread,
where a blocking ``commit()`` is refused). A commit that fails because the group rebalanced
(:class:`~offsetlab.bus.ports.CommitRebalanced`) is logged and the records are redelivered
to whoever owns the partition next; any other commit error is a crash.

Crashes
-------
A handler (message or batch), ``on_tick`` or the client raising is a crash: the batch is
finished as above (settled records committed, the failed record and what follows it sought
back), :class:`~offsetlab.bus.lifecycle.Crash` is emitted with the
:class:`~offsetlab.bus.config.CrashPolicy`'s decision, the consumer is closed, and either a
new consumer is built after the backoff (restart, KafkaJS's default) or the runner ends in
``CRASHED``. A crash before the first group join fails the join handle and never restarts.

Client quirks (kafka-python's abandoned rejoin, its leaked IO threads after a failed
bootstrap) are handled by the transport (:mod:`offsetlab.bus.transports.kafka_python.compat`).
A consumer factory that fetches the topics' partitions before joining
(``compat.warmed_consumer``) avoids an empty first assignment where the topics exist before
the consumer starts; it is the caller's choice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

from offsetlab.bus import transports
from offsetlab.bus.batch import BatchContext
from offsetlab.bus.config import RunnerConfig
from offsetlab.bus.errors import (
    ConfigError,
    JoinFailed,
    JoinTimeout,
    RunnerStateError,
    StopTimeout,
)
from offsetlab.bus.join import JoinHandle
from offsetlab.bus.lifecycle import (
    Commit,
    Connect,
    Crash,
    Disconnect,
    GroupJoin,
    LifecycleEvent,
    LifecycleListener,
    Pause,
    Rebalance,
    RebalancePhase,
    Resume,
    RunnerState,
    Stop,
)
from offsetlab.bus.ports import CommitRebalanced, ConsumerClient
from offsetlab.bus.types import Record, TopicPartition, sorted_partitions

__all__ = ["BatchContext", "ConsumerRunner", "JoinHandle", "MessageHandler", "BatchHandler"]

_log = logging.getLogger(__name__)

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


class _Notes:
    """The rebalance listener: it may run on a client thread (kafka-python's IO thread, while
    the runner thread is blocked in ``poll()``/``close()``) or inside ``poll()``
    (confluent-kafka). It only records what happened (and re-pauses partitions the runner
    was asked to keep paused); the runner thread turns the notes into lifecycle events
    after ``poll()`` returns."""

    def __init__(self, runner: ConsumerRunner, consumer: ConsumerClient) -> None:
        self._runner = runner
        self._consumer = consumer
        self.notes: deque[tuple[str, float, tuple[TopicPartition, ...], dict[str, Any]]] = deque()

    def on_revoked(self, partitions: tuple[TopicPartition, ...]) -> None:
        self.notes.append(("revoked", time.monotonic(), partitions, {}))

    def on_lost(self, partitions: tuple[TopicPartition, ...]) -> None:
        self.notes.append(("lost", time.monotonic(), partitions, {}))

    def on_assigned(self, partitions: tuple[TopicPartition, ...]) -> None:
        at = time.monotonic()
        extra: dict[str, Any] = {}
        try:
            extra["member_id"], extra["generation"] = self._consumer.group_metadata()
        except Exception:  # metadata is a nice-to-have in the event, never a reason to fail
            _log.debug("group_metadata() failed in on_assigned", exc_info=True)
        try:
            extra["full"] = sorted_partitions(self._consumer.assignment())
        except Exception:
            extra["full"] = partitions
        with self._runner._lock:
            keep_paused = [tp for tp in extra["full"] if tp in self._runner._requested_paused]
        if keep_paused:
            self._consumer.pause(keep_paused)
            extra["repaused"] = tuple(keep_paused)
        self.notes.append(("assigned", at, partitions, extra))


class ConsumerRunner:
    """One group member on its own thread, with KafkaJS's ``run()`` semantics.

    Arguments: ``config`` (:class:`~offsetlab.bus.config.RunnerConfig`); exactly one of
    ``handler(record)`` or ``batch_handler(records, ctx)``; ``listeners`` (callables taking a
    :class:`~offsetlab.bus.lifecycle.LifecycleEvent`); ``consumer_factory`` (replaces the
    client library's consumer class: kafka-python calls it as ``factory(**kwargs)`` instead of
    ``KafkaConsumer``, confluent-kafka as ``factory(settings)`` instead of ``Consumer``;
    tests pass a fake);
    ``on_tick(ctx)`` called on the runner thread after every poll, even an empty one.

    Calls from other threads (``pause``, ``resume``, ``stop``) are queued and run on the
    runner thread at its next loop turn (at most ``poll_timeout_ms`` later); called from the
    runner thread itself (a handler or listener) they apply at once.
    """

    def __init__(
        self,
        config: RunnerConfig,
        *,
        handler: MessageHandler | None = None,
        batch_handler: BatchHandler | None = None,
        listeners: Iterable[LifecycleListener] = (),
        consumer_factory: ConsumerFactory | None = None,
        on_tick: TickHook | None = None,
    ) -> None:
        if not isinstance(config, RunnerConfig):
            raise ConfigError(f"ConsumerRunner(config=...) needs a RunnerConfig, got {config!r}")
        if (handler is None) == (batch_handler is None):
            raise ConfigError(
                "ConsumerRunner needs exactly one of handler=(record) or "
                "batch_handler=(records, ctx)"
            )
        self.config = config
        self.name = config.name
        self._handler = handler
        self._batch_handler = batch_handler
        self._factory = consumer_factory
        self._transport = transports.get(config.client)
        self._on_tick = on_tick
        self._listeners: tuple[LifecycleListener, ...] = tuple(listeners)
        self._lock = threading.RLock()
        self._state = RunnerState.CREATED
        self._handle = JoinHandle(self.name)
        self._thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._commands: deque[tuple[Callable[[], None], Future[None]]] = deque()
        self._requested_paused: set[TopicPartition] = set()
        self._assignment: frozenset[TopicPartition] = frozenset()
        # runner-thread-only state
        self._consumer: ConsumerClient | None = None
        self._notes: _Notes | None = None
        self._committed: dict[TopicPartition, int] = {}
        self._pending_commit: dict[TopicPartition, int] = {}
        self._incarnation = 0
        self._restarts = 0
        self._joined = False
        self._subscribed_at = 0.0
        self.last_error: BaseException | None = None

    # ----------------------------------------------------------------------------- public API
    @property
    def state(self) -> RunnerState:
        with self._lock:
            return self._state

    @property
    def join_handle(self) -> JoinHandle:
        return self._handle

    @property
    def restarts(self) -> int:
        return self._restarts

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions assigned at the last rebalance the runner thread processed."""
        with self._lock:
            return self._assignment

    def paused(self) -> frozenset[TopicPartition]:
        """Partitions paused by request (kept paused across rebalances until resumed)."""
        with self._lock:
            return frozenset(self._requested_paused)

    def add_listener(self, listener: LifecycleListener) -> None:
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def start(self) -> JoinHandle:
        """Start consuming on a new thread; return at once with the join handle.

        Idempotent while running (returns the same handle). A stopped or crashed runner
        cannot start again: build a new one (:class:`RunnerStateError`).
        """
        with self._lock:
            if self._state in (RunnerState.STOPPED, RunnerState.CRASHED):
                raise RunnerStateError(
                    f"runner {self.name!r} is {self._state.value}; build a new ConsumerRunner"
                )
            if self._thread is None:
                self._state = RunnerState.STARTING
                self._thread = threading.Thread(
                    target=self._main, name=f"offsetlab-runner-{self.name}", daemon=True
                )
                self._thread.start()
            return self._handle

    def run(self, timeout: float | None = 60.0, *, stop_on_timeout: bool = True) -> GroupJoin:
        """``start()`` and wait until the group join succeeded (KafkaJS's ``await run()``).

        Raises :class:`JoinFailed` (the runner is then ``CRASHED`` and its thread finished)
        or :class:`JoinTimeout` (with ``stop_on_timeout`` the runner is stopped first).
        """
        handle = self.start()
        try:
            return handle.wait(timeout)
        except JoinTimeout:
            if stop_on_timeout:
                self.stop()
            raise
        except JoinFailed:
            self._join_thread(self.config.close_timeout_ms / 1000 + 5)
            raise

    def stop(self, timeout: float | None = 30.0) -> RunnerState:
        """Commit settled offsets, leave the group, close; wait for the thread (idempotent).

        Returns the final state (``STOPPED``, or ``CRASHED`` if it had crashed before).
        Called from the runner thread (a handler or listener) it only requests the stop.
        Raises :class:`StopTimeout` if the thread did not finish within ``timeout``.
        """
        self._stop_requested.set()
        with self._lock:
            if self._thread is None:
                if self._state is RunnerState.CREATED:
                    self._state = RunnerState.STOPPED
                    self._handle._fail(JoinFailed(f"runner {self.name!r} stopped before start"))
                return self._state
            thread = self._thread
        if threading.current_thread() is thread:
            return self.state
        if not self._join_thread(timeout):
            raise StopTimeout(
                f"runner {self.name!r} did not stop within {timeout} s (a handler still "
                f"running? close() waiting on the broker at {self.config.bootstrap_servers}?)"
            )
        return self.state

    def pause(self, partitions: Iterable[TopicPartition]) -> Future[None]:
        """Stop fetching ``partitions`` but keep polling (the member stays in the group).

        The request is remembered: partitions not assigned yet are paused when assigned,
        and partitions a rebalance hands back are re-paused. Returns a future that
        completes when the runner thread applied it.
        """
        tps = tuple(partitions)
        return self._submit(lambda: self._do_pause(tps))

    def resume(self, partitions: Iterable[TopicPartition]) -> Future[None]:
        """Fetch ``partitions`` again. Returns a future, as :meth:`pause`."""
        tps = tuple(partitions)
        return self._submit(lambda: self._do_resume(tps))

    # --------------------------------------------------------------------------- plumbing
    def _submit(self, fn: Callable[[], None]) -> Future[None]:
        future: Future[None] = Future()
        if threading.current_thread() is self._thread:
            self._run_command(fn, future)
        elif self.state in (RunnerState.STOPPED, RunnerState.CRASHED):
            future.set_exception(self._ended_error())
        else:
            self._commands.append((fn, future))
        return future

    def _ended_error(self) -> RunnerStateError:
        return RunnerStateError(
            f"runner {self.name!r} is {self.state.value}: pause()/resume() need a running "
            f"runner; build a new ConsumerRunner"
        )

    def _fail_commands(self) -> None:
        while self._commands:
            _, future = self._commands.popleft()
            if not future.done():
                future.set_exception(self._ended_error())

    @staticmethod
    def _run_command(fn: Callable[[], None], future: Future[None]) -> None:
        try:
            fn()
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(None)

    def _drain_commands(self) -> None:
        while self._commands:
            fn, future = self._commands.popleft()
            self._run_command(fn, future)

    def _join_thread(self, timeout: float | None) -> bool:
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

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
        if first_join or self._stop_requested.is_set():
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
