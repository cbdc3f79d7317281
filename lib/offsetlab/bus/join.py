"""The consumer runner's join handle: KafkaJS's awaited ``run()`` as a value.

:class:`JoinHandle` completes once, when the runner's first group join succeeded or failed;
``ConsumerRunner.start()`` returns it at once, ``ConsumerRunner.run()`` waits on it.
"""

from __future__ import annotations

import threading
import time

from offsetlab.bus.errors import JoinFailed, JoinTimeout
from offsetlab.bus.lifecycle import GroupJoin

__all__ = ["JoinHandle"]


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
