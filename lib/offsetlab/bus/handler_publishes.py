"""Transactional mode: what a handler publishes goes out with its record, or not at all.

In a transactional subscription (``KafkaBusConfig.transactional_id``) a handler that calls
``bus.publish(event)`` (or ``publish_many``) on the runner thread does not write at once:
the record is kept in a :class:`HandlerPublishes` buffer (one per thread) and the
subscription core writes it into the batch's transaction **only if the handler's record
settles** (the handler returned ``None``/``Ok``). A handler that raised or returned
``Retry``/``Reject`` after publishing leaves no trace: its record is retried or
dead-lettered and its publishes are dropped, so a retry that succeeds later publishes once.
The batch's transaction then commits the publishes, the retry copies, the dead letters and
the consumed offsets together.

``publish`` inside such a handler returns ``Receipt(topic, -1, -1)``: where the record will
land is not known until it is written (after the handler returned); it becomes visible to
``read_committed`` readers when the batch commits. Outside a transactional handler (any
other thread, or a bus without a transactional id) ``publish`` is the normal, acknowledged
publish.

``publish_for_aggregate`` inside such a handler clears the aggregate's pending events when
they are buffered; if the record then does not settle they are dropped with it, so the
redelivered record must produce them again (a handler that derives its events from the
record it handles does; one that keeps an aggregate in memory across deliveries does not).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

__all__ = ["HandlerPublishes", "PublishedRecord"]

PublishedRecord = tuple[str, bytes | None, bytes | None, Sequence[tuple[str, bytes]]]
"""``(topic, value, key, headers)`` of a record a handler published."""


class HandlerPublishes:
    """A per-thread buffer, open while a transactional batch is handled on that thread."""

    def __init__(self) -> None:
        self._local = threading.local()

    def open(self) -> None:
        self._local.records = []

    def close(self) -> None:
        self._local.records = None

    def buffer(self) -> list[PublishedRecord] | None:
        """The open buffer of this thread (``None``: not inside a transactional batch)."""
        records: list[PublishedRecord] | None = getattr(self._local, "records", None)
        return records

    def take(self) -> list[PublishedRecord]:
        """The records published since the last ``take`` (and empty the buffer)."""
        records: list[PublishedRecord] | None = getattr(self._local, "records", None)
        if not records:
            return []
        self._local.records = []
        return records
