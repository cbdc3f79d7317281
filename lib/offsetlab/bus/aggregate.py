"""Aggregate roots collect the events they raise until they are published.

An aggregate (cosmicpython's "model") appends events with :meth:`AggregateRoot.raise_event`
while it changes state; nothing is sent then. :func:`publish_for_aggregate` later publishes
the pending events in order through a ``publish`` callable that returns only once the
broker acknowledged (or raises :class:`~offsetlab.bus.errors.PublishError`), and removes each
event from the aggregate only after its acknowledgement. When one fails it stops: that event
and the ones after it stay pending, in order, and the caller gets an
:class:`~offsetlab.bus.errors.AggregatePublishError` naming what was and was not published
(its ``__cause__`` names topic, servers and timeout). Calling it again retries from there.

Every bus's ``publish_for_aggregate`` is this function with the bus's ``publish``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from offsetlab.bus.errors import AggregatePublishError, PublishError
from offsetlab.bus.events import Event

__all__ = ["AggregateRoot", "publish_for_aggregate"]


class AggregateRoot:
    """Base class of aggregates: holds the events raised and not yet published."""

    def __init__(self) -> None:
        self._pending_events: list[Event] = []
        self._events_lock = threading.Lock()
        # held for a whole publish_for_aggregate, so two threads publishing the same
        # aggregate (a redelivery racing the next handler) never send an event twice
        self.publishing_lock = threading.RLock()

    @property
    def pending_events(self) -> tuple[Event, ...]:
        """Events raised and not yet acknowledged by the broker, oldest first."""
        with self._events_lock:
            return tuple(self._pending_events)

    def raise_event(self, event: Event) -> None:
        """Record that ``event`` happened; it is published by ``publish_for_aggregate``."""
        if not isinstance(event, Event):
            raise TypeError(f"raise_event({event!r}): expected an offsetlab.bus.Event")
        with self._events_lock:
            self._pending_events.append(event)

    def mark_published(self, event: Event) -> None:
        """Remove ``event`` (by identity) from the pending events; the broker acknowledged it."""
        with self._events_lock:
            for i, pending in enumerate(self._pending_events):
                if pending is event:
                    del self._pending_events[i]
                    return
        raise ValueError(f"{event!r} is not pending on {self!r}")

    def aggregate_label(self) -> str:
        """How errors name this aggregate; override to add an id."""
        return type(self).__name__


def publish_for_aggregate(
    aggregate: AggregateRoot, publish: Callable[[Event], object]
) -> list[Event]:
    """Publish the aggregate's pending events in order; clear each once acknowledged.

    Returns the events published by this call. ``publish`` must block until the broker
    acknowledged the event and raise ``PublishError`` when it did not.
    """
    published: list[Event] = []
    with aggregate.publishing_lock:
        for event in aggregate.pending_events:
            try:
                publish(event)
            except PublishError as exc:
                unpublished = aggregate.pending_events
                raise AggregatePublishError(
                    f"published {len(published)} of {len(published) + len(unpublished)} "
                    f"events of {aggregate.aggregate_label()}; {event.event_type} (event_id "
                    f"{event.event_id}) to topic {event.topic!r} was not acknowledged ({exc}); "
                    f"it and {len(unpublished) - 1} later event(s) stay on the aggregate: call "
                    "publish_for_aggregate again once the broker is reachable",
                    published=tuple(published),
                    unpublished=unpublished,
                ) from exc
            aggregate.mark_published(event)
            published.append(event)
    return published
