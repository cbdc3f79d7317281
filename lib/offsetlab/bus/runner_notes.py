"""The consumer runner's rebalance listener (:class:`_Notes`): it writes down what a
rebalance did, for the runner thread to act on after ``poll()`` returns."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from offsetlab.bus.ports import ConsumerClient
from offsetlab.bus.types import TopicPartition, sorted_partitions

if TYPE_CHECKING:
    from offsetlab.bus.runner_member import MemberThread

__all__ = ["_Notes"]

_log = logging.getLogger("offsetlab.bus.runner")


class _Notes:
    """The rebalance listener: it may run on a client thread (kafka-python's IO thread, while
    the runner thread is blocked in ``poll()``/``close()``) or inside ``poll()``
    (confluent-kafka). It only records what happened (and re-pauses partitions the runner
    was asked to keep paused); the runner thread turns the notes into lifecycle events
    after ``poll()`` returns."""

    def __init__(self, runner: MemberThread, consumer: ConsumerClient) -> None:
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
