"""A dependency circuit breaker: closed, open, half-open (the seed's service).

- **closed**: calls go through; ``failure_threshold`` failures in a row open it.
- **open**: calls fail fast with :class:`~offsetlab.bus.errors.DependencyUnavailable`; every
  ``probe_interval_s`` the ``alive_check`` is asked (any exception counts as "not alive");
  when it answers true the breaker goes half-open. Without an ``alive_check`` it goes
  half-open once ``probe_interval_s`` has passed (the classic timeout).
- **half-open**: calls go through on trial; ``success_threshold`` successes in a row close
  it, one failure opens it again.

Time only moves when someone looks: :meth:`CircuitBreaker.tick` (the buses call it on every
poll-loop turn) and :meth:`~CircuitBreaker.allow`/:meth:`~CircuitBreaker.guard` run a due
probe. The clock is injectable (``clock() -> seconds``) so tests and the in-memory bus drive
it by hand.

Subscriptions that ``depends_on`` a breaker listen to its transitions: on open they pause
their partitions and keep polling; on half-open they resume (the next delivery is the trial
call); they re-pause after a rebalance while it is open. Listeners are plain callables
taking a :class:`BreakerTransition`; they run on the thread that caused the transition,
after the breaker's lock is released; a listener that raises does not change the breaker.

What counts as a failure in :meth:`~CircuitBreaker.call` is ``is_failure(exc)``; by default
the retriable exceptions of the default :class:`~offsetlab.bus.classify.ErrorClassifier`
(a dependency that returns bad data is not down).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import ParamSpec, TypeVar

from offsetlab.bus.classify import ErrorClassifier
from offsetlab.bus.errors import ConfigError, DependencyUnavailable

__all__ = ["BreakerState", "BreakerTransition", "CircuitBreaker"]

_log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    """Calls go through; failures are counted."""
    OPEN = "open"
    """Calls fail fast; the alive check is probed every ``probe_interval_s``."""
    HALF_OPEN = "half_open"
    """Trial calls go through; successes close, a failure reopens."""


@dataclass(frozen=True)
class BreakerTransition:
    """One state change, for listeners and timelines (``at`` is the breaker's clock)."""

    breaker: str
    previous: BreakerState
    state: BreakerState
    at: float
    reason: str


_DEFAULT_CLASSIFIER = ErrorClassifier()


def _default_is_failure(exc: BaseException) -> bool:
    return _DEFAULT_CLASSIFIER.is_retriable(exc) and not isinstance(exc, DependencyUnavailable)


class CircuitBreaker:
    """Guards one dependency; see the module docstring for the states."""

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        success_threshold: int = 2,
        probe_interval_s: float = 5.0,
        alive_check: Callable[[], bool] | None = None,
        is_failure: Callable[[BaseException], bool] = _default_is_failure,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not name:
            raise ConfigError("CircuitBreaker name must be non-empty (it names the dependency)")
        for key, value in (("failure_threshold", failure_threshold),
                           ("success_threshold", success_threshold)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"CircuitBreaker.{key}={value!r} must be an int >= 1")
        if not isinstance(probe_interval_s, int | float) or probe_interval_s <= 0:
            raise ConfigError(
                f"CircuitBreaker.probe_interval_s={probe_interval_s!r} must be a number > 0"
            )
        self.name = name
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.probe_interval_s = float(probe_interval_s)
        self._alive_check = alive_check
        self._is_failure = is_failure
        self._clock = clock
        self._lock = threading.RLock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._successes = 0
        self._next_probe_at: float | None = None
        self._probing = False
        self._listeners: list[Callable[[BreakerTransition], None]] = []
        self.transitions: list[BreakerTransition] = []
        self.probes = 0

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value})"

    # -- observation -------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def is_open(self) -> bool:
        return self._state is BreakerState.OPEN

    @property
    def next_probe_at(self) -> float | None:
        """When the next alive check is due (clock seconds), while open; else ``None``."""
        return self._next_probe_at if self._state is BreakerState.OPEN else None

    def add_listener(self, listener: Callable[[BreakerTransition], None]) -> Callable[[], None]:
        """Call ``listener(transition)`` on every state change; returns a remover."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    # -- the calls a user makes --------------------------------------------------------

    def allow(self) -> bool:
        """True unless open (runs a due probe first)."""
        self.tick()
        return self._state is not BreakerState.OPEN

    def guard(self) -> None:
        """Raise ``DependencyUnavailable`` at once while open (fail fast)."""
        if not self.allow():
            raise DependencyUnavailable(
                f"dependency {self.name!r} is unavailable: its circuit breaker is open "
                f"(next alive check at t={self._next_probe_at:.3f}); the record will be retried"
            )

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``guard()``, call ``fn``, and record its success or failure."""
        self.guard()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if self._is_failure(exc):
                self.record_failure(exc)
            raise
        self.record_success()
        return result

    def record_success(self) -> None:
        fire: list[BreakerTransition] = []
        with self._lock:
            self._failures = 0
            if self._state is BreakerState.HALF_OPEN:
                self._successes += 1
                if self._successes >= self.success_threshold:
                    fire.append(self._move(BreakerState.CLOSED,
                                           f"{self._successes} successes in half-open"))
        self._notify(fire)

    def record_failure(self, error: BaseException | None = None) -> None:
        what = "" if error is None else f": {type(error).__name__}: {error}"
        fire: list[BreakerTransition] = []
        with self._lock:
            self._successes = 0
            if self._state is BreakerState.CLOSED:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    fire.append(self._open(f"{self._failures} failures in a row{what}"))
            elif self._state is BreakerState.HALF_OPEN:
                fire.append(self._open(f"failure in half-open{what}"))
        self._notify(fire)

    def tick(self) -> BreakerState:
        """Run the alive check if one is due; returns the state after it."""
        with self._lock:
            due = (
                self._state is BreakerState.OPEN
                and not self._probing
                and self._next_probe_at is not None
                and self._clock() >= self._next_probe_at
            )
            if not due:
                return self._state
            self._probing = True
        fire: list[BreakerTransition] = []
        try:
            alive, detail = self._probe()
            with self._lock:
                self.probes += 1
                if self._state is BreakerState.OPEN:
                    if alive:
                        self._successes = 0
                        fire.append(self._move(BreakerState.HALF_OPEN, detail))
                    else:
                        self._next_probe_at = self._clock() + self.probe_interval_s
        finally:
            with self._lock:
                self._probing = False
        self._notify(fire)
        return self._state

    def force_open(self, reason: str = "forced open") -> None:
        """Open now (e.g. an operator knows the dependency is down)."""
        fire: list[BreakerTransition] = []
        with self._lock:
            if self._state is not BreakerState.OPEN:
                fire.append(self._open(reason))
        self._notify(fire)

    # -- internals ---------------------------------------------------------------------

    def _probe(self) -> tuple[bool, str]:
        if self._alive_check is None:
            return True, f"probe interval {self.probe_interval_s:g}s passed"
        try:
            return bool(self._alive_check()), "alive check passed"
        except Exception as exc:  # an alive check that raises means "not alive"
            _log.debug("alive check of %s raised %r", self.name, exc)
            return False, f"alive check raised {type(exc).__name__}"

    def _open(self, reason: str) -> BreakerTransition:
        self._failures = 0
        self._successes = 0
        self._next_probe_at = self._clock() + self.probe_interval_s
        return self._move(BreakerState.OPEN, reason)

    def _move(self, state: BreakerState, reason: str) -> BreakerTransition:
        transition = BreakerTransition(self.name, self._state, state, self._clock(), reason)
        self._state = state
        if state is not BreakerState.OPEN:
            self._next_probe_at = None
        self.transitions.append(transition)
        return transition

    def _notify(self, transitions: list[BreakerTransition]) -> None:
        if not transitions:
            return
        with self._lock:
            listeners = list(self._listeners)
        for transition in transitions:
            for listener in listeners:
                try:
                    listener(transition)
                except Exception:
                    _log.exception("breaker %s listener %r raised", self.name, listener)
