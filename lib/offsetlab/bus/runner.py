"""The consumer runner: KafkaJS's ``consumer.run()`` shape on top of kafka-python.

kafka-python has no ``run()``: ``subscribe()`` returns at once and the group join happens
inside ``poll()``. :class:`ConsumerRunner` owns one ``KafkaConsumer`` on its own thread
(every consumer call happens there) and gives the caller what the seed's adapter needs:

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
``on_partitions_revoked`` needs no commit (kafka-python 3 runs rebalance listeners on its IO
thread, where a blocking ``commit()`` is refused). A commit that fails because the group
rebalanced (``CommitFailedError`` and friends) is logged and the records are redelivered to
whoever owns the partition next; any other commit error is a crash.

Crashes
-------
A handler (message or batch), ``on_tick`` or the client raising is a crash: the batch is
finished as above (settled records committed, the failed record and what follows it sought
back), :class:`~offsetlab.bus.lifecycle.Crash` is emitted with the
:class:`~offsetlab.bus.config.CrashPolicy`'s decision, the consumer is closed, and either a
new consumer is built after the backoff (restart, KafkaJS's default) or the runner ends in
``CRASHED``. A crash before the first group join fails the join handle and never restarts.

Known limitation (kafka-python 3.0.12): when a consumer joins before its first metadata
fetch has seen the topic, the group leader assigns no partitions and the group rebalances
again once the metadata arrives; ``run()`` then returns with the first, empty assignment and
the partitions follow a moment later (a rebalance event). A consumer factory that fetches the
topics' partitions first (``KafkaConsumer.partitions_for_topic``) avoids it where the topics
exist before the consumer starts. Doing that inside the runner for every consumer made the
bus's in-place retry scenarios fail reproducibly here, so it is the caller's choice. A rejoin
kafka-python abandons is restarted by :func:`_unstick_join`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata, TopicPartition

from offsetlab.bus.config import RunnerConfig
from offsetlab.bus.errors import (
    ConfigError,
    JoinFailed,
    JoinTimeout,
    RunnerStateError,
    StopTimeout,
)
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

__all__ = ["BatchContext", "ConsumerRunner", "JoinHandle", "MessageHandler", "BatchHandler"]

_log = logging.getLogger(__name__)

MessageHandler = Callable[[ConsumerRecord], object]
BatchHandler = Callable[[list[ConsumerRecord], "BatchContext"], object]
TickHook = Callable[["BatchContext"], object]
ConsumerFactory = Callable[..., Any]

# Errors of a commit that only mean "the group moved on": not a crash, records get redelivered.
_REBALANCE_COMMIT_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.CommitFailedError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.IllegalGenerationError,
    kafka_errors.UnknownMemberIdError,
)


def _tp(record: ConsumerRecord) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


def _sorted(tps: Iterable[TopicPartition]) -> tuple[TopicPartition, ...]:
    return tuple(sorted(tps))


def _reap_io_threads(before: set[int | None], client_id: str) -> int:
    """Stop IO threads a failed ``KafkaConsumer(...)`` left behind; return how many.

    kafka-python 3.0.12 starts its IO thread (``kafka-io-<client_id>``) before it bootstraps
    in ``KafkaConsumer.__init__`` and does not stop it when the bootstrap fails (e.g. the
    broker is unreachable), so every failed construction would leak a thread. The thread's
    target is the bound ``NetworkSelector.run_forever``; closing that selector ends it.
    Best effort: threads started by others under the same client id may be missed.
    """
    reaped = 0
    for thread in threading.enumerate():
        if thread.name != f"kafka-io-{client_id}" or thread.ident in before:
            continue
        selector = getattr(getattr(thread, "_target", None), "__self__", None)
        close = getattr(selector, "close", None)
        if callable(close):
            try:
                close()
                reaped += 1
            except Exception:
                _log.warning("could not stop leaked kafka IO thread %s", thread.name, exc_info=True)
    return reaped


def _unstick_join(consumer: Any) -> bool:
    """Restart a group join kafka-python 3.0.12 abandoned; return True if it did.

    When a rejoin is triggered by the leader's metadata snapshot changing (typically right
    after a first generation that was assigned before the metadata showed a just-created
    topic), ``poll()`` can time out while the JoinGroup/SyncGroup task is in flight; by the
    time the task finishes, ``need_rejoin()`` already answers False (the leader recorded
    the new snapshot while assigning), so no later ``poll()`` consumes the task's result:
    the assignment is never applied and the member sits with no partitions until something
    else forces a rejoin (seen on embedded Kafka 4.1.1: 20 s to minutes). That stuck state
    is "join task done, nothing wants to rejoin"; asking for a rejoin lets the next
    ``poll()`` run a fresh join. Consumers without those internals (fakes) are left alone.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_join_task", None)
    if coordinator is None or task is None or not getattr(task, "is_done", False):
        return False
    try:
        if coordinator.need_rejoin():
            return False
        coordinator.request_rejoin()
    except Exception:  # internals changed: leave the consumer to itself
        _log.debug("could not inspect kafka-python's join state", exc_info=True)
        return False
    return True


class JoinHandle:
    """Completes once, when the runner's first group join succeeded or failed.

    ``wait(timeout)`` returns the :class:`GroupJoin` event or raises :class:`JoinFailed`
    (``__cause__`` is the client's error) or :class:`JoinTimeout` (the runner keeps trying;
    the handle may still complete later). Safe to use from any thread.
    """

    def __init__(self, runner_name: str) -> None:
        self._name = runner_name
        self._done = threading.Event()
        self._join: GroupJoin | None = None
        self._error: JoinFailed | None = None
        self.completed_at: float | None = None
        """``time.monotonic()`` when the handle completed (for latency measurements)."""

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> GroupJoin:
        if not self._done.wait(timeout):
            raise JoinTimeout(
                f"runner {self._name!r} did not join its group within {timeout} s; it keeps "
                f"trying: call stop() to give up, or wait again (is the broker up, the group's "
                f"previous member gone, group.initial.rebalance.delay.ms small?)"
            )
        if self._error is not None:
            raise self._error
        assert self._join is not None
        return self._join

    def exception(self) -> JoinFailed | None:
        """The failure, if the handle completed with one (None if pending or joined)."""
        return self._error

    def _succeed(self, join: GroupJoin) -> None:
        if self._done.is_set():
            return
        self._join = join
        self.completed_at = time.monotonic()
        self._done.set()

    def _fail(self, error: JoinFailed) -> None:
        if self._done.is_set():
            return
        self._error = error
        self.completed_at = time.monotonic()
        self._done.set()


class BatchContext:
    """What a batch handler (and ``on_tick``) may do, on the runner thread, to the consumer.

    - ``records``: the batch (empty for ``on_tick``);
    - ``settle(record)``: the record is done; it counts toward the commit at batch end;
    - ``seek(tp, offset)``: the next fetch of ``tp`` starts at ``offset``; records of ``tp``
      later in this batch should not be processed (see :meth:`skipped`) and unsettled ones
      will be delivered again; the runner will not seek ``tp`` back itself;
    - ``pause(tps)`` / ``resume(tps)`` / ``paused()``: as :meth:`ConsumerRunner.pause`,
      applied at once; unsettled records of a paused partition are redelivered after resume;
    - ``assignment()``; ``commit_now()``: commit what is settled so far in this batch;
    - ``skipped(record)``: True when the record will be redelivered anyway (its partition
      was sought or paused in this batch, or the runner is stopping) -- don't process it;
    - ``stopping()``: ``stop()`` was requested; finish quickly.

    It has no producer: retries and dead letters are the bus's business.
    """

    def __init__(self, runner: ConsumerRunner, records: Sequence[ConsumerRecord]) -> None:
        self._runner = runner
        self.records: tuple[ConsumerRecord, ...] = tuple(records)
        self._offsets: dict[TopicPartition, list[int]] = {}
        for r in self.records:
            self._offsets.setdefault(_tp(r), []).append(r.offset)
        self._settled: dict[TopicPartition, set[int]] = {tp: set() for tp in self._offsets}
        self._sought: dict[TopicPartition, int] = {}
        self._paused_here: set[TopicPartition] = set()

    # -- settling -------------------------------------------------------------------------
    def settle(self, record: ConsumerRecord) -> None:
        tp = _tp(record)
        if tp not in self._offsets or record.offset not in self._offsets[tp]:
            raise RunnerStateError(
                f"settle(): record {tp.topic}[{tp.partition}]@{record.offset} is not in this "
                f"batch; settle records of the batch being handled, on the runner thread"
            )
        self._settled[tp].add(record.offset)

    def is_settled(self, record: ConsumerRecord) -> bool:
        return record.offset in self._settled.get(_tp(record), ())

    def skipped(self, record: ConsumerRecord) -> bool:
        tp = _tp(record)
        return (
            tp in self._sought
            or tp in self._paused_here
            or tp in self._runner.paused()
            or self._runner._stop_requested.is_set()
        )

    def stopping(self) -> bool:
        return self._runner._stop_requested.is_set()

    # -- consumer operations ----------------------------------------------------------------
    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._runner._seek(tp, offset)
        self._sought[tp] = offset

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        tps = tuple(tps)
        self._runner._do_pause(tps)
        self._paused_here.update(tps)

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        self._runner._do_resume(tuple(tps))

    def paused(self) -> frozenset[TopicPartition]:
        return self._runner.paused()

    def assignment(self) -> frozenset[TopicPartition]:
        return self._runner.assignment()

    def commit_now(self) -> dict[TopicPartition, int]:
        """Commit settled records of this batch now; returns what was committed."""
        return self._runner._commit(self.commit_positions())

    # -- used by the runner at batch end ------------------------------------------------------
    def commit_positions(self) -> dict[TopicPartition, int]:
        """Per partition, last contiguous settled offset + 1 (only partitions with progress)."""
        positions: dict[TopicPartition, int] = {}
        for tp, offsets in self._offsets.items():
            settled = self._settled[tp]
            last = None
            for off in offsets:
                if off not in settled:
                    break
                last = off
            if last is not None:
                positions[tp] = last + 1
        return positions

    def first_unsettled(self) -> dict[TopicPartition, int]:
        """Per partition with a gap, the offset delivery must restart from."""
        gaps: dict[TopicPartition, int] = {}
        for tp, offsets in self._offsets.items():
            for off in offsets:
                if off not in self._settled[tp]:
                    gaps[tp] = off
                    break
        return gaps


class _Notes(ConsumerRebalanceListener):
    """kafka-python's rebalance listener: runs on the client's IO thread while the runner
    thread is blocked in ``poll()``/``close()``. It only records what happened (and
    re-pauses partitions the runner was asked to keep paused); the runner thread turns the
    notes into lifecycle events after ``poll()`` returns."""

    def __init__(self, runner: ConsumerRunner, consumer: Any) -> None:
        self._runner = runner
        self._consumer = consumer
        self.notes: deque[tuple[str, float, tuple[TopicPartition, ...], dict[str, Any]]] = deque()

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.notes.append(("revoked", time.monotonic(), _sorted(revoked), {}))

    def on_partitions_lost(self, lost: Any) -> None:
        self.notes.append(("lost", time.monotonic(), _sorted(lost), {}))

    def on_partitions_assigned(self, assigned: Any) -> None:
        at = time.monotonic()
        extra: dict[str, Any] = {}
        try:
            meta = self._consumer.group_metadata()
            extra["member_id"] = str(getattr(meta, "member_id", "") or "")
            extra["generation"] = int(getattr(meta, "generation_id", -1))
        except Exception:  # metadata is a nice-to-have in the event, never a reason to fail
            _log.debug("group_metadata() failed in on_partitions_assigned", exc_info=True)
        try:
            extra["full"] = _sorted(self._consumer.assignment() or ())
        except Exception:
            extra["full"] = _sorted(assigned)
        with self._runner._lock:
            keep_paused = [tp for tp in extra["full"] if tp in self._runner._requested_paused]
        if keep_paused:
            self._consumer.pause(*keep_paused)
            extra["repaused"] = tuple(keep_paused)
        self.notes.append(("assigned", at, _sorted(assigned), extra))


class ConsumerRunner:
    """One KafkaConsumer on its own thread, with KafkaJS's ``run()`` semantics.

    Arguments: ``config`` (:class:`~offsetlab.bus.config.RunnerConfig`); exactly one of
    ``handler(record)`` or ``batch_handler(records, ctx)``; ``listeners`` (callables taking a
    :class:`~offsetlab.bus.lifecycle.LifecycleEvent`); ``consumer_factory`` (called as
    ``factory(**config.kafka_kwargs())``, default ``kafka.KafkaConsumer``; tests pass a fake);
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
        consumer_factory: ConsumerFactory = KafkaConsumer,
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
        self._consumer: Any = None
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
        return set(self._consumer.assignment() or ())

    def _do_pause(self, tps: tuple[TopicPartition, ...]) -> None:
        if not all(isinstance(tp, TopicPartition) for tp in tps):
            raise TypeError("pause() takes TopicPartition values")
        with self._lock:
            self._requested_paused.update(tps)
        live = [tp for tp in tps if tp in self._assigned_now()]
        if live:
            self._consumer.pause(*live)
        if tps:
            self._emit(Pause(at=time.monotonic(), runner=self.name, partitions=_sorted(tps)))

    def _do_resume(self, tps: tuple[TopicPartition, ...]) -> None:
        if not all(isinstance(tp, TopicPartition) for tp in tps):
            raise TypeError("resume() takes TopicPartition values")
        with self._lock:
            self._requested_paused.difference_update(tps)
        live = [tp for tp in tps if tp in self._assigned_now()]
        if live:
            self._consumer.resume(*live)
        if tps:
            self._emit(Resume(at=time.monotonic(), runner=self.name, partitions=_sorted(tps)))

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        if tp in self._assigned_now():
            self._consumer.seek(tp, offset)
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
        try:
            self._consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in todo.items()})
        except _REBALANCE_COMMIT_ERRORS as exc:
            _log.warning("runner %s: commit %s failed because the group rebalanced (%s); the "
                         "records will be delivered again", self.name, todo, type(exc).__name__)
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
    def _handle_records(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        records = [r for tp in polled for r in polled[tp]]
        if not records:
            return
        ctx = BatchContext(self, records)
        try:
            if self._batch_handler is not None:
                self._batch_handler(records, ctx)
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
                    consumer.close(autocommit=False, timeout_ms=self.config.close_timeout_ms)
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
        before = {t.ident for t in threading.enumerate()}
        try:
            if self._stop_requested.is_set():
                self._graceful_stop()
                return None
            self._consumer = self._factory(**self.config.kafka_kwargs())
        except BaseException as exc:
            self._consumer = None
            _reap_io_threads(before, self.name)
            return exc
        self._emit(Connect(at=time.monotonic(), runner=self.name, incarnation=self._incarnation))
        try:
            self._notes = _Notes(self, self._consumer)
            self._subscribed_at = time.monotonic()
            self._consumer.subscribe(topics=list(self.config.topics), listener=self._notes)
            while True:
                self._drain_commands()
                if self._stop_requested.is_set():
                    self._graceful_stop()
                    return None
                if self._pending_commit:
                    self._commit({})
                timeout = (self.config.poll_timeout_ms if self._joined
                           else self.config.join_poll_timeout_ms)
                polled = self._consumer.poll(timeout_ms=timeout)
                if _unstick_join(self._consumer):
                    _log.warning("runner %s: kafka-python abandoned a finished group join; "
                                 "rejoining", self.name)
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

    def _close_consumer(self, *, autocommit: bool) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            consumer.close(autocommit=autocommit, timeout_ms=self.config.close_timeout_ms)
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
        self._close_consumer(autocommit=False)
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
        self._close_consumer(autocommit=False)
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
