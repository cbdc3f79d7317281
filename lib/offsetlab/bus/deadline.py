"""One deadline and one wait loop, instead of hand-written ``time.monotonic()`` loops.

.. code-block:: python

    deadline = Deadline(5.0)
    future.get(timeout=deadline.remaining())      # never negative
    if deadline.expired(): ...

    wait_until(lambda: sub.state is SubscriptionState.RUNNING, timeout_s=30,
               what="the subscription to run")    # TimeoutError naming what and how long

Monotonic time throughout (a wall-clock jump never shortens or stretches a wait).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Deadline", "wait_until", "wait_for"]

T = TypeVar("T")


class Deadline:
    """A point ``timeout_s`` seconds from now (``None``: never)."""

    __slots__ = ("timeout_s", "_at")

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self._at = None if timeout_s is None else time.monotonic() + timeout_s

    def remaining(self) -> float | None:
        """Seconds left, never below 0 (``None`` for a deadline that never comes)."""
        if self._at is None:
            return None
        return max(0.0, self._at - time.monotonic())

    def left(self) -> float:
        """Seconds left as a float (a never-deadline gives ``float('inf')``)."""
        remaining = self.remaining()
        return float("inf") if remaining is None else remaining

    def expired(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at

    def __repr__(self) -> str:
        return f"Deadline({self.timeout_s!r}, remaining={self.remaining()!r})"


def wait_for(probe: Callable[[], T | None], *, timeout_s: float, what: str,
             interval_s: float = 0.05) -> T:
    """Call ``probe`` until it returns something other than ``None``/``False``; return it.

    ``TimeoutError`` after ``timeout_s`` names ``what`` and the timeout. ``probe`` is called
    at least once, and once more after the deadline passed (a last look).
    """
    deadline = Deadline(timeout_s)
    while True:
        expired = deadline.expired()
        value = probe()
        if value is not None and value is not False:
            return value
        if expired:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(min(interval_s, deadline.left()))


def wait_until(condition: Callable[[], object], *, timeout_s: float, what: str,
               interval_s: float = 0.05) -> None:
    """Until ``condition()`` is true; ``TimeoutError`` naming ``what`` after ``timeout_s``."""
    wait_for(lambda: True if condition() else None, timeout_s=timeout_s, what=what,
             interval_s=interval_s)
