"""Idempotent handlers: run a handler's effect at most once per event id.

Kafka's commit makes a *consumer* exactly-once only for effects inside Kafka (the
transactional mode). An effect outside Kafka (a database row, a backup started) is
at-least-once: a member killed after the effect and before its commit leaves the record
uncommitted, and the next owner of the partition handles it again. The wrapper here keeps a
record of the events a handler finished, keyed by ``(scope, event.event_id)``, and skips an
event it finished before:

.. code-block:: python

    store = InMemoryProcessedStore(max_entries=100_000)     # or SqliteProcessedStore(path)
    handler = idempotent(send_to_interface, store, scope="backups.send")
    # or: @Idempotent(store, scope="backups.send") on the function

``scope`` names whose progress it is (use the consumer group): two groups handling the same
event each run their handler once. Only a handler that returns ``None`` or :class:`Ok` marks
the event done; its return value or exception passes through unchanged (``Retry``/``Reject``
and exceptions leave it unmarked, so the retry runs the handler again). A skipped duplicate
returns :data:`~offsetlab.bus.outcomes.OK`. Two deliveries of one event at once (a member
that lost its partition still handling the record its replacement got) are serialized: the
second waits until the first finished, then skips (or runs, if the first did not mark).

The window that stays at-least-once: the handler's effect is done and the mark is not yet
written (a kill in between). With a store apart from the effect there is always such a
window, however short; on redelivery the effect runs again. It closes only when the effect
and the mark commit together: :func:`idempotent_in_transaction` gives the handler the
:class:`SqliteProcessedStore`'s connection inside the transaction that also writes the mark,
so a kill before the commit undoes both and a kill after it leaves both (SQLite's atomic
commit); an effect elsewhere (an HTTP call) needs that system to take the event id as an
idempotency key.

Stores (:class:`ProcessedStore`), both safe to share between runner threads:

- :class:`InMemoryProcessedStore`: a bounded LRU of marks by count (``max_entries``), lost
  with the process: it covers redeliveries inside one process (in-place and main-topic
  retries, a rebalance between two members of one process), and only while the event is
  among the last ``max_entries`` marked or seen; older ones run again;
- :class:`SqliteProcessedStore`: marks in an SQLite file, kept across restarts and shared by
  processes on one host. ``claim`` serializes duplicates among the threads of one store
  object; across processes only the transactional form serializes them (it holds SQLite's
  write lock for the handler's run, so it also serializes every handler on that file).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from offsetlab.bus.events import Event
from offsetlab.bus.outcomes import OK, Ok

if TYPE_CHECKING:  # sqlite3 is imported when an SQLite store is made
    import sqlite3

__all__ = [
    "Claim",
    "ProcessedStore",
    "InMemoryProcessedStore",
    "SqliteProcessedStore",
    "SqliteClaim",
    "IdempotentHandler",
    "Idempotent",
    "idempotent",
    "idempotent_in_transaction",
]

E = TypeVar("E", bound=Event)
R = TypeVar("R")


class Claim:
    """One holder of ``(scope, event_id)`` inside a store's ``claim`` block."""

    __slots__ = ("scope", "event_id", "already_done", "marked")

    def __init__(self, scope: str, event_id: str, already_done: bool) -> None:
        self.scope, self.event_id = scope, event_id
        self.already_done = already_done  #: marked before this claim began
        self.marked = False

    def mark(self) -> None:
        """Record the event as done when the block exits without an exception."""
        self.marked = True


class ProcessedStore(Protocol):
    """Where a handler's finished events are recorded.

    ``claim(scope, event_id)`` is a context manager giving a :class:`Claim`: while its block
    runs, no other claim of the same key on this store enters its block (a second one waits);
    ``claim.already_done`` says whether the key was marked before; ``claim.mark()`` inside
    the block records it when the block exits normally. An exception leaves it unmarked and
    propagates unchanged.
    """

    def claim(self, scope: str, event_id: str) -> AbstractContextManager[Claim]: ...

    def seen(self, scope: str, event_id: str) -> bool: ...


class _InFlight:
    """Keys being handled now; a second claimant of a key waits for the first to leave."""

    def __init__(self) -> None:
        self._busy: set[tuple[str, str]] = set()
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, key: tuple[str, str]) -> Iterator[None]:
        with self._cond:
            while key in self._busy:
                self._cond.wait()
            self._busy.add(key)
        try:
            yield
        finally:
            with self._cond:
                self._busy.discard(key)
                self._cond.notify_all()


class InMemoryProcessedStore:
    """Marks in a process's memory, at most ``max_entries`` of them, least recently used
    evicted first (a hit refreshes a mark). An evicted event, redelivered, runs again."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries={max_entries!r} must be >= 1")
        self.max_entries = max_entries
        self._done: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()
        self._in_flight = _InFlight()
        self.evicted = 0

    @contextmanager
    def claim(self, scope: str, event_id: str) -> Iterator[Claim]:
        key = (scope, event_id)
        with self._in_flight.hold(key):
            claim = Claim(scope, event_id, self.seen(scope, event_id))
            yield claim
            if claim.marked and not claim.already_done:
                with self._lock:
                    self._done[key] = None
                    while len(self._done) > self.max_entries:
                        self._done.popitem(last=False)
                        self.evicted += 1

    def seen(self, scope: str, event_id: str) -> bool:
        key = (scope, event_id)
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return True
            return False

    def __len__(self) -> int:
        with self._lock:
            return len(self._done)


class SqliteClaim(Claim):
    """A claim inside an SQLite transaction: write the effect through ``connection``."""

    __slots__ = ("connection",)

    def __init__(self, scope: str, event_id: str, already_done: bool,
                 connection: sqlite3.Connection) -> None:
        super().__init__(scope, event_id, already_done)
        self.connection = connection


_SCHEMA = ("CREATE TABLE IF NOT EXISTS {table} (scope TEXT NOT NULL, event_id TEXT NOT NULL, "
           "processed_at REAL NOT NULL, PRIMARY KEY (scope, event_id)) WITHOUT ROWID")


class SqliteProcessedStore:
    """Marks in an SQLite file (table ``table``); one connection per thread.

    :meth:`claim` checks and writes the mark in statements of their own (the effect is
    elsewhere); :meth:`transaction` opens ``BEGIN IMMEDIATE`` first, so the handler's own
    writes through ``claim.connection`` and the mark commit together or not at all.
    ``busy_timeout_s`` is how long a claimant waits for SQLite's write lock: it must exceed
    the longest handler run in transactional use (then ``sqlite3.OperationalError``).
    """

    def __init__(self, path: str, *, table: str = "processed_events",
                 busy_timeout_s: float = 30.0) -> None:
        if not table.isidentifier():
            raise ValueError(f"table={table!r} must be an identifier")
        if path in ("", ":memory:") or path.startswith("file::memory:"):
            raise ValueError(f"path={path!r}: each thread's connection would get its own "
                             "database; use a file (InMemoryProcessedStore for memory)")
        self.path, self.table, self.busy_timeout_s = path, table, busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._in_flight = _InFlight()
        self._closed = False
        self.connection().execute(_SCHEMA.format(table=table))

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit mode: transactions are explicit)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            import sqlite3

            with self._lock:
                if self._closed:
                    raise RuntimeError(f"SqliteProcessedStore({self.path!r}) is closed")
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s,
                                       isolation_level=None, check_same_thread=False)
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def seen(self, scope: str, event_id: str) -> bool:
        row = self.connection().execute(
            f"SELECT 1 FROM {self.table} WHERE scope = ? AND event_id = ?",
            (scope, event_id)).fetchone()
        return row is not None

    def _insert_mark(self, conn: sqlite3.Connection, scope: str, event_id: str) -> None:
        conn.execute(f"INSERT OR IGNORE INTO {self.table} (scope, event_id, processed_at) "
                     "VALUES (?, ?, ?)", (scope, event_id, time.time()))

    @contextmanager
    def claim(self, scope: str, event_id: str) -> Iterator[Claim]:
        with self._in_flight.hold((scope, event_id)):
            claim = Claim(scope, event_id, self.seen(scope, event_id))
            yield claim
            if claim.marked and not claim.already_done:
                self._insert_mark(self.connection(), scope, event_id)

    @contextmanager
    def transaction(self, scope: str, event_id: str) -> Iterator[SqliteClaim]:
        """A claim whose block runs inside one SQLite transaction: committed with the mark
        when the block exits normally and marked, rolled back otherwise (an exception, or a
        handler outcome that did not mark it)."""
        with self._in_flight.hold((scope, event_id)):
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                claim = SqliteClaim(scope, event_id, self.seen(scope, event_id), conn)
                yield claim
                if claim.marked and not claim.already_done:
                    self._insert_mark(conn, scope, event_id)
                    conn.execute("COMMIT")
                else:
                    conn.execute("ROLLBACK")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def count(self, scope: str | None = None) -> int:
        """How many marks (of ``scope``, or all)."""
        sql, args = f"SELECT COUNT(*) FROM {self.table}", ()
        if scope is not None:
            sql, args = sql + " WHERE scope = ?", (scope,)  # type: ignore[assignment]
        return int(self.connection().execute(sql, args).fetchone()[0])

    def close(self) -> None:
        """Close every thread's connection (use from no thread still claiming)."""
        with self._lock:
            self._closed = True
            conns, self._connections = self._connections, []
        for conn in conns:
            conn.close()

    def __enter__(self) -> SqliteProcessedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _marks(result: object) -> bool:
    return result is None or isinstance(result, Ok)


class IdempotentHandler(Generic[E, R]):
    """``handler`` run at most once per ``(scope, event.event_id)`` that it finished.

    ``runs`` counts calls of the handler, ``skipped`` deliveries answered from the store.
    """

    def __init__(self, handler: Callable[..., R], store: Any, scope: str, *,
                 transactional: bool = False) -> None:
        if not scope:
            raise ValueError("scope must name whose progress this is (e.g. the consumer group)")
        functools.update_wrapper(self, handler)  # first: it copies the handler's __dict__
        self.handler, self.store, self.scope = handler, store, scope
        self.transactional = transactional
        self.runs = self.skipped = 0
        self._count_lock = threading.Lock()

    def __call__(self, event: E) -> R | Ok:
        claim_of = self.store.transaction if self.transactional else self.store.claim
        with claim_of(self.scope, event.event_id) as claim:
            if claim.already_done:
                with self._count_lock:
                    self.skipped += 1
                return OK
            with self._count_lock:
                self.runs += 1
            if self.transactional:
                result = self.handler(event, claim.connection)
            else:
                result = self.handler(event)
            if _marks(result):
                claim.mark()
            return result


def idempotent(handler: Callable[[E], R], store: ProcessedStore, *,
               scope: str) -> IdempotentHandler[E, R]:
    """``handler`` made idempotent by event id in ``store`` (see the module docstring)."""
    return IdempotentHandler(handler, store, scope)


def idempotent_in_transaction(handler: Callable[[E, sqlite3.Connection], R],
                              store: SqliteProcessedStore, *,
                              scope: str) -> IdempotentHandler[E, R]:
    """``handler(event, connection)`` run inside the SQLite transaction that writes its
    mark: its writes through ``connection`` and the mark commit together (do not commit or
    roll back on it yourself)."""
    return IdempotentHandler(handler, store, scope, transactional=True)


class Idempotent:
    """Decorator form: ``@Idempotent(store, scope="backups.send")``."""

    def __init__(self, store: ProcessedStore, *, scope: str) -> None:
        self.store, self.scope = store, scope

    def __call__(self, handler: Callable[[E], R]) -> IdempotentHandler[E, R]:
        return idempotent(handler, self.store, scope=self.scope)
