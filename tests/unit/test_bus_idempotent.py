"""offsetlab.bus.idempotent: a handler's effect at most once per event id, on both stores."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.idempotent import (
    Idempotent,
    InMemoryProcessedStore,
    SqliteProcessedStore,
    idempotent,
    idempotent_in_transaction,
)
from offsetlab.bus.memory import InMemoryBus
from offsetlab.bus.outcomes import OK, Ok, Reject, Retry


@dataclass(frozen=True, kw_only=True)
class Ping(Event):
    topic: ClassVar[str] = "pings"
    n: int = 0


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    if request.param == "memory":
        yield InMemoryProcessedStore()
    else:
        with SqliteProcessedStore(str(tmp_path / "processed.db")) as s:
            yield s


class Effects:
    """A recording effect that can be told to fail."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.fail: type[Exception] | None = None
        self.lock = threading.Lock()

    def handler(self, event: Ping) -> None:
        if self.fail is not None:
            raise self.fail(f"effect failed for {event.n}")
        with self.lock:
            self.done.append(event.event_id)


def test_a_redelivered_event_runs_the_effect_once(store) -> None:
    effects = Effects()
    handler = idempotent(effects.handler, store, scope="g")
    event = Ping(n=1)
    assert handler(event) is None          # the handler's own return value
    assert handler(event) == OK            # the duplicate, skipped
    assert handler(Ping(n=1)) is None      # same fields, another event id: runs
    assert len(effects.done) == 2 and effects.done[0] == event.event_id
    assert (handler.runs, handler.skipped) == (2, 1)
    assert store.seen("g", event.event_id) and not store.seen("other-group", event.event_id)


def test_without_the_wrapper_the_redelivery_repeats_the_effect() -> None:
    effects = Effects()
    event = Ping(n=1)
    effects.handler(event)
    effects.handler(event)
    assert effects.done == [event.event_id] * 2


def test_scopes_are_apart(store) -> None:
    a, b = Effects(), Effects()
    event = Ping()
    idempotent(a.handler, store, scope="group-a")(event)
    idempotent(b.handler, store, scope="group-b")(event)
    assert a.done == b.done == [event.event_id]


def test_an_exception_passes_through_unmarked_and_the_retry_runs_it(store) -> None:
    effects = Effects()
    handler = idempotent(effects.handler, store, scope="g")
    event = Ping()
    effects.fail = ConnectionError
    with pytest.raises(ConnectionError, match="effect failed"):
        handler(event)
    assert not store.seen("g", event.event_id) and effects.done == []
    effects.fail = None
    assert handler(event) is None
    assert effects.done == [event.event_id] and store.seen("g", event.event_id)


@pytest.mark.parametrize("outcome", [Retry(reason="later", delay_s=1.0), Reject(reason="no")])
def test_retry_and_reject_pass_through_and_do_not_mark(store, outcome) -> None:
    calls: list[str] = []

    def handler(event: Ping) -> Retry | Reject | Ok:
        calls.append(event.event_id)
        return outcome if len(calls) == 1 else Ok()

    wrapped = idempotent(handler, store, scope="g")
    event = Ping()
    assert wrapped(event) is outcome
    assert not store.seen("g", event.event_id)
    assert wrapped(event) == Ok() and store.seen("g", event.event_id)
    assert wrapped(event) == OK and len(calls) == 2


def test_decorator_form_and_the_wrapped_name(store) -> None:
    @Idempotent(store, scope="g")
    def on_ping(event: Ping) -> None:
        """Doc."""

    assert on_ping.__name__ == "on_ping" and on_ping.__doc__ == "Doc."
    on_ping(Ping())
    assert on_ping.runs == 1


def test_duplicates_at_once_run_the_effect_once(store) -> None:
    """Two deliveries of one event in two threads (a member that lost the partition still
    handling it while its replacement got it): the second waits for the first, then skips."""
    inside, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow(event: Ping) -> None:
        calls.append(event.event_id)
        inside.set()
        release.wait(10)

    handler = idempotent(slow, store, scope="g")
    events = [Ping(n=i) for i in range(8)]
    threads = [threading.Thread(target=handler, args=(e,)) for e in events for _ in range(3)]
    for t in threads:
        t.start()
    assert inside.wait(10)
    time.sleep(0.3)  # the duplicates run into the claim now (or into the effect, unguarded)
    release.set()
    for t in threads:
        t.join(10)
    assert sorted(calls) == sorted(e.event_id for e in events)
    assert (handler.runs, handler.skipped) == (8, 16)


def test_the_memory_store_is_a_bounded_lru() -> None:
    store = InMemoryProcessedStore(max_entries=2)
    effects = Effects()
    handler = idempotent(effects.handler, store, scope="g")
    a, b, c = Ping(n=1), Ping(n=2), Ping(n=3)
    handler(a)
    handler(b)
    handler(a)          # a skipped: a hit refreshes it, b is now the oldest
    handler(c)          # evicts b
    assert len(store) == 2 and store.evicted == 1
    assert store.seen("g", a.event_id) and not store.seen("g", b.event_id)
    handler(b)          # forgotten: runs again (the bound's price)
    assert effects.done == [a.event_id, b.event_id, c.event_id, b.event_id]
    with pytest.raises(ValueError):
        InMemoryProcessedStore(max_entries=0)


def test_sqlite_marks_survive_a_new_store_on_the_same_file(tmp_path: Path) -> None:
    path = str(tmp_path / "p.db")
    effects = Effects()
    event = Ping()
    with SqliteProcessedStore(path) as first:
        idempotent(effects.handler, first, scope="g")(event)
    with SqliteProcessedStore(path) as second:   # a restarted process
        assert idempotent(effects.handler, second, scope="g")(event) == OK
        assert second.count("g") == 1
    assert effects.done == [event.event_id]


def _orders_table(store: SqliteProcessedStore) -> None:
    store.connection().execute("CREATE TABLE orders (event_id TEXT PRIMARY KEY, n INTEGER)")


def _orders(store: SqliteProcessedStore) -> list[tuple[str, int]]:
    return store.connection().execute("SELECT event_id, n FROM orders").fetchall()


def _write_order(crash: Callable[[], None] = lambda: None):
    def handler(event: Ping, conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO orders VALUES (?, ?)", (event.event_id, event.n))
        crash()
    return handler


def test_sqlite_effect_and_mark_commit_together(tmp_path: Path) -> None:
    with SqliteProcessedStore(str(tmp_path / "p.db")) as store:
        _orders_table(store)
        handler = idempotent_in_transaction(_write_order(), store, scope="g")
        event = Ping(n=7)
        assert handler(event) is None
        assert handler(event) == OK
        assert _orders(store) == [(event.event_id, 7)] and store.seen("g", event.event_id)


def test_sqlite_a_crash_between_effect_and_mark_leaves_neither(tmp_path: Path) -> None:
    """The effect is written, then the handler dies before the mark: the transaction rolls
    both back, so the redelivery writes the effect once (no duplicate, no loss)."""

    class Killed(Exception):
        pass

    def die() -> None:
        raise Killed("after the effect, before the mark")

    path = str(tmp_path / "p.db")
    with SqliteProcessedStore(path) as store:
        _orders_table(store)
        event = Ping(n=7)
        with pytest.raises(Killed):
            idempotent_in_transaction(_write_order(die), store, scope="g")(event)
        assert _orders(store) == [] and not store.seen("g", event.event_id)
        assert not store.connection().in_transaction
        idempotent_in_transaction(_write_order(), store, scope="g")(event)
    with SqliteProcessedStore(path) as reader:
        assert _orders(reader) == [(event.event_id, 7)] and reader.count() == 1


def test_sqlite_not_in_one_transaction_the_crash_leaves_the_effect(tmp_path: Path) -> None:
    """The other way: the same write on the plain claim commits on its own, so the same crash
    leaves the effect without the mark and the redelivery writes it a second time."""

    class Killed(Exception):
        pass

    def die() -> None:
        raise Killed("after the effect, before the mark")

    with SqliteProcessedStore(str(tmp_path / "p.db")) as store:
        _orders_table(store)
        conn = store.connection()
        event = Ping(n=7)

        def write(crash: Callable[[], None]) -> Callable[[Ping], None]:
            def handler(e: Ping) -> None:
                conn.execute("INSERT INTO effects VALUES (?)", (e.event_id,))
                crash()
            return handler

        conn.execute("CREATE TABLE effects (event_id TEXT)")
        with pytest.raises(Killed):
            idempotent(write(die), store, scope="g")(event)
        idempotent(write(lambda: None), store, scope="g")(event)
        assert conn.execute("SELECT COUNT(*) FROM effects").fetchone()[0] == 2


def test_sqlite_retry_outcome_rolls_the_writes_back(tmp_path: Path) -> None:
    with SqliteProcessedStore(str(tmp_path / "p.db")) as store:
        _orders_table(store)

        def handler(event: Ping, conn: sqlite3.Connection) -> Retry:
            conn.execute("INSERT INTO orders VALUES (?, ?)", (event.event_id, event.n))
            return Retry(reason="dependency down")

        result = idempotent_in_transaction(handler, store, scope="g")(Ping())
        assert isinstance(result, Retry) and _orders(store) == [] and store.count() == 0


def test_sqlite_transactions_from_several_threads(tmp_path: Path) -> None:
    with SqliteProcessedStore(str(tmp_path / "p.db")) as store:
        _orders_table(store)
        handler = idempotent_in_transaction(_write_order(), store, scope="g")
        events = [Ping(n=i) for i in range(20)]
        threads = [threading.Thread(target=lambda es=events[i::4]: [handler(e) for e in es * 2])
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(n for _, n in _orders(store)) == list(range(20))
        assert (handler.runs, handler.skipped) == (20, 20)


def test_on_the_memory_bus_a_republished_record_is_skipped() -> None:
    """The same record delivered twice (what a redelivery after a kill looks like to the
    handler: same bytes, same event id) runs the effect once; the bus commits both."""
    effects = Effects()
    store = InMemoryProcessedStore()
    registry = EventRegistry([Ping])
    with InMemoryBus(registry) as bus:
        handler = idempotent(effects.handler, store, scope="g")
        bus.subscribe(Ping, handler, group="g").run()
        bus.publish(Ping(n=1))
        bus.drain()
        [record] = bus.records("pings")
        bus.publish_raw("pings", record.value, key=record.key, headers=record.headers)
        bus.drain()
        assert len(bus.records("pings")) == 2 and bus.lag("g", "pings") == 0
    assert len(effects.done) == 1 and (handler.runs, handler.skipped) == (1, 1)


_KILLED_CHILD = """
import os, signal, sys
from dataclasses import dataclass
from typing import ClassVar
from offsetlab.bus.events import Event
from offsetlab.bus.idempotent import SqliteProcessedStore, idempotent, idempotent_in_transaction

@dataclass(frozen=True, kw_only=True)
class Ping(Event):
    topic: ClassVar[str] = "pings"

path, mode, event_id = sys.argv[1:4]
store = SqliteProcessedStore(path)
own = store.connection()

def effect(conn):
    conn.execute("INSERT INTO effects VALUES (?)", (event_id,))
    os.kill(os.getpid(), signal.SIGKILL)  # after the effect, before the mark

if mode == "transaction":
    idempotent_in_transaction(lambda e, conn: effect(conn), store, scope="g")(Ping(event_id=event_id))
else:
    idempotent(lambda e: effect(own), store, scope="g")(Ping(event_id=event_id))
"""


@pytest.mark.parametrize("mode, effects_left", [("transaction", 0), ("claim", 1)])
def test_sigkill_between_effect_and_mark(tmp_path: Path, mode: str, effects_left: int) -> None:
    """A real SIGKILL of the process after its effect, before the mark: in one transaction
    neither survives; with the plain claim the effect does and the mark does not (the
    at-least-once window: the redelivery would write it again)."""
    import signal
    import subprocess
    import sys

    path = str(tmp_path / "p.db")
    event = Ping()
    with SqliteProcessedStore(path) as store:
        store.connection().execute("CREATE TABLE effects (event_id TEXT)")
    child = subprocess.run([sys.executable, "-c", _KILLED_CHILD, path, mode, event.event_id],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with SqliteProcessedStore(path) as store:
        left = store.connection().execute("SELECT COUNT(*) FROM effects").fetchone()[0]
        assert (left, store.seen("g", event.event_id)) == (effects_left, False)


def test_sqlite_store_refuses_a_per_connection_memory_database() -> None:
    with pytest.raises(ValueError, match="own database"):
        SqliteProcessedStore(":memory:")
