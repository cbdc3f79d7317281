"""Drivers: what a scenario needs from a run besides the bus.

``Driver`` is the protocol (:mod:`offsetlab.bus.testing`'s, as are the drivers these
specialise): :class:`MemoryDriver` runs scenarios on the in-memory bus with a manual clock
(simulated seconds, deterministic) over :func:`~scenarios.events.scenario_registry`;
:class:`KafkaDriver` runs them on a Kafka bus in real time (``sleep``/``idle`` sleep,
``wait_until`` polls the predicate until its timeout, ``records`` reads a topic from the
beginning, ``name`` adds the run id). Both fail a wait with ``AssertionError``.
"""

from __future__ import annotations

from offsetlab.bus import testing
from offsetlab.bus.events import EventRegistry
from offsetlab.bus.memory import InMemoryBus
from offsetlab.bus.testing import Driver, RecordLike

from scenarios.events import scenario_registry

__all__ = ["Driver", "RecordLike", "MemoryDriver", "KafkaDriver"]


class MemoryDriver(testing.MemoryDriver):
    """Runs scenarios on :class:`InMemoryBus` with a :class:`ManualClock`."""

    timeout_error = AssertionError

    def __init__(self, registry: EventRegistry | None = None, *, default_partitions: int = 3):
        registry = registry if registry is not None else scenario_registry()
        super().__init__(lambda clock: InMemoryBus(registry, clock=clock,
                                                   default_partitions=default_partitions))


class KafkaDriver(testing.KafkaDriver):
    """Runs scenarios on a Kafka bus in real time (the bus is built by the caller).

    ``records(topic)`` reads the topic from the beginning to its current end with a
    group-less consumer (it never auto-creates the topic). The clock is epoch seconds, the
    same time base as the not-before headers.
    """

    timeout_error = AssertionError
