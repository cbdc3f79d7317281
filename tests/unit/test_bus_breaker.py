"""The circuit breaker: transitions, probes, fail fast, listeners; on a hand-driven clock."""

from __future__ import annotations

import pytest
from offsetlab.bus.breaker import BreakerState, BreakerTransition, CircuitBreaker
from offsetlab.bus.errors import ConfigError, DependencyUnavailable
from offsetlab.bus.memory import ManualClock

CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


class Alive:
    """A settable alive check that counts its calls."""

    def __init__(self) -> None:
        self.alive = False
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.alive


def _breaker(clock: ManualClock, alive: Alive | None = None, **kw) -> CircuitBreaker:
    kw.setdefault("failure_threshold", 3)
    kw.setdefault("success_threshold", 2)
    kw.setdefault("probe_interval_s", 5.0)
    return CircuitBreaker("db", alive_check=alive, clock=clock, **kw)


def test_consecutive_failures_open_and_a_success_resets_the_count() -> None:
    b = _breaker(ManualClock())
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state is CLOSED
    b.record_failure(TimeoutError("slow"))
    assert b.state is OPEN
    assert "3 failures in a row: TimeoutError: slow" in b.transitions[-1].reason


def test_open_fails_fast_and_probes_on_its_interval() -> None:
    clock, alive = ManualClock(), Alive()
    b = _breaker(clock, alive)
    b.force_open()
    with pytest.raises(DependencyUnavailable, match="'db' is unavailable"):
        b.guard()
    assert alive.calls == 0 and b.next_probe_at == clock() + 5.0
    clock.advance(4.9)
    assert b.tick() is OPEN and alive.calls == 0
    clock.advance(0.1)
    assert b.tick() is OPEN and alive.calls == 1  # probed, still down
    assert b.next_probe_at == clock() + 5.0
    alive.alive = True
    clock.advance(2)
    assert b.tick() is OPEN and alive.calls == 1  # not due yet
    clock.advance(3)
    assert b.allow() and b.state is HALF
    assert alive.calls == 2 and b.probes == 2


def test_half_open_closes_after_successes_and_reopens_on_failure() -> None:
    clock, alive = ManualClock(), Alive()
    alive.alive = True
    b = _breaker(clock, alive)
    b.force_open()
    clock.advance(5)
    b.tick()
    b.record_success()
    assert b.state is HALF
    b.record_failure(ConnectionError("again"))
    assert b.state is OPEN and b.next_probe_at == clock() + 5
    clock.advance(5)
    b.tick()
    b.record_success()
    b.record_success()
    assert b.state is CLOSED and b.next_probe_at is None
    assert [t.state for t in b.transitions] == [OPEN, HALF, OPEN, HALF, CLOSED]


def test_without_alive_check_the_interval_alone_half_opens() -> None:
    clock = ManualClock()
    b = _breaker(clock)
    b.force_open()
    clock.advance(5)
    assert b.tick() is HALF
    assert "probe interval 5s passed" in b.transitions[-1].reason


def test_alive_check_that_raises_means_not_alive() -> None:
    clock = ManualClock()

    def boom() -> bool:
        raise OSError("no route")

    b = _breaker(clock, boom)  # type: ignore[arg-type]
    b.force_open()
    clock.advance(5)
    assert b.tick() is OPEN and b.probes == 1


def test_call_counts_only_failures_that_mean_down() -> None:
    b = _breaker(ManualClock(), failure_threshold=2)

    def bad_data() -> None:
        raise ValueError("bad data")

    def down() -> None:
        raise ConnectionError("down")

    for _ in range(5):
        with pytest.raises(ValueError):
            b.call(bad_data)
    assert b.state is CLOSED
    for _ in range(2):
        with pytest.raises(ConnectionError):
            b.call(down)
    assert b.state is OPEN
    calls = []
    with pytest.raises(DependencyUnavailable):
        b.call(calls.append, 1)
    assert calls == []  # failed fast, the dependency was not called


def test_call_returns_and_counts_success() -> None:
    clock = ManualClock()
    b = _breaker(clock, success_threshold=1)
    b.force_open()
    clock.advance(5)
    assert b.call(lambda x: x * 2, 21) == 42
    assert b.state is CLOSED


def test_listeners_see_transitions_in_order_and_a_raising_listener_is_contained() -> None:
    clock = ManualClock()
    b = _breaker(clock, success_threshold=1)
    seen: list[BreakerTransition] = []

    def bad_listener(t: BreakerTransition) -> None:
        raise RuntimeError("listener bug")

    b.add_listener(bad_listener)
    remove = b.add_listener(seen.append)
    b.force_open("ops said so")
    clock.advance(5)
    b.tick()
    b.record_success()
    assert [(t.previous, t.state) for t in seen] == [(CLOSED, OPEN), (OPEN, HALF), (HALF, CLOSED)]
    assert seen[0].reason == "ops said so" and seen[0].breaker == "db"
    assert seen[1].at == clock()
    remove()
    b.force_open()
    assert len(seen) == 3


@pytest.mark.parametrize(("kw", "match"), [
    ({"failure_threshold": 0}, "failure_threshold"),
    ({"success_threshold": 1.5}, "success_threshold"),
    ({"probe_interval_s": 0}, "probe_interval_s"),
])
def test_configuration_errors(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CircuitBreaker("x", **kw)
    with pytest.raises(ConfigError, match="name"):
        CircuitBreaker("")
