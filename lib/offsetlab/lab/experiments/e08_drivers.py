"""E08's drivers: a bus and how time passes on it (the story waits through them).

The drivers are :mod:`offsetlab.bus.testing`'s (the bus tests' scenarios run on them too):
:class:`MemoryDriver` runs :class:`~offsetlab.bus.memory.InMemoryBus` on a
:class:`~offsetlab.bus.memory.ManualClock` (simulated time, deterministic);
:class:`KafkaDriver` here is the Kafka one built from a broker handle: a Kafka bus in real
time that reads topics back from that broker (with its client settings).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from offsetlab.brokers import BrokerHandle
from offsetlab.bus import testing
from offsetlab.bus.interface import EventBus
from offsetlab.bus.testing import Driver, MemoryDriver

__all__ = ["Driver", "MemoryDriver", "KafkaDriver"]


class KafkaDriver(testing.KafkaDriver):
    """A Kafka bus in real time on ``broker``. ``records(topic)`` reads a topic to its end
    with a group-less consumer (it never creates the topic). ``clock`` is the clock the bus
    stamps its activities with (epoch seconds by default: the time base of not-before
    headers)."""

    def __init__(self, bus: EventBus, broker: BrokerHandle, *,
                 clock: Callable[[], float] = time.time, poll_s: float = 0.05) -> None:
        super().__init__(bus, broker.bootstrap_servers, client_settings=broker.client_config,
                         clock=clock, run_id=uuid.uuid4().hex[:8], poll_s=poll_s,
                         read_timeout_s=15.0)
        self.broker = broker
