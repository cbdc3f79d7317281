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

Transactions
------------
With a ``transaction`` (a :class:`~offsetlab.bus.ports.TransactionClient`), every batch is one
transaction: it begins before the handler runs, the handler's writes go into it, and at
the end of the batch the commit positions are added to it (``send_offsets_to_transaction``)
and it is committed, instead of a consumer commit. If it aborts
(:class:`~offsetlab.bus.errors.TransactionAborted`), every partition of the batch is sought
back to the batch's first record, so the whole batch is delivered again and nothing it
wrote is visible to ``read_committed`` readers. A fenced producer
(:class:`~offsetlab.bus.errors.TransactionFenced`) is a crash that never restarts.

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
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future

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
from offsetlab.bus.lifecycle import GroupJoin, LifecycleListener, RunnerState
from offsetlab.bus.ports import ConsumerClient, TransactionClient
from offsetlab.bus.runner_member import (
    BatchHandler,
    ConsumerFactory,
    MemberThread,
    MessageHandler,
    TickHook,
    _Notes,
)
from offsetlab.bus.types import TopicPartition

__all__ = ["BatchContext", "ConsumerRunner", "JoinHandle", "MessageHandler", "BatchHandler"]

_log = logging.getLogger(__name__)


class ConsumerRunner(MemberThread):
    """One group member on its own thread, with KafkaJS's ``run()`` semantics.

    Arguments: ``config`` (:class:`~offsetlab.bus.config.RunnerConfig`); exactly one of
    ``handler(record)`` or ``batch_handler(records, ctx)``; ``listeners`` (callables taking a
    :class:`~offsetlab.bus.lifecycle.LifecycleEvent`); ``consumer_factory`` (replaces the
    client library's consumer class: kafka-python calls it as ``factory(**kwargs)`` instead of
    ``KafkaConsumer``, confluent-kafka as ``factory(settings)`` instead of ``Consumer``;
    tests pass a fake);
    ``on_tick(ctx)`` called on the runner thread after every poll, even an empty one;
    ``transaction`` (transactional mode, see "Transactions" in the module docstring).

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
        transaction: TransactionClient | None = None,
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
        self._txn = transaction
        self._txn_metadata: object = None
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

    def _join_thread(self, timeout: float | None) -> bool:
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()
