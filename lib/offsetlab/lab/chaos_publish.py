"""The chaos run's publisher: a thread that publishes events ``0..n-1`` in paced batches
through a :class:`PublishClient` (the bus's ``publish_many`` or a raw ``KafkaProducer``), and
counts an event as acknowledged only when a publish call containing it returned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from offsetlab.bus.deadline import Deadline

from .chaos_worker import ChaosEvent, chaos_registry

__all__ = ["PUBLISH_TIMEOUT_S", "PublishClient", "RawPublishClient", "BusPublishClient",
           "Publisher"]

log = logging.getLogger(__name__)

#: seconds one publish call may take (the bus's ``publish_timeout_s``; the raw flush timeout)
PUBLISH_TIMEOUT_S = 10.0


class PublishClient(Protocol):
    """Publishes a batch and returns only when the broker acknowledged every event of it;
    raises otherwise (some of the batch may have been written anyway)."""

    def publish(self, events: list[ChaosEvent]) -> None: ...

    def close(self) -> None: ...


class RawPublishClient:
    """KafkaProducer (kafka-python 3 defaults: acks=all, idempotent), flushed per batch."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        from kafka import KafkaProducer

        self._registry, self._topic = chaos_registry(""), topic
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers,
                                       max_block_ms=int(PUBLISH_TIMEOUT_S * 1000))

    def publish(self, events: list[ChaosEvent]) -> None:
        futures = []
        for event in events:
            enc = self._registry.encode(event)
            futures.append(self._producer.send(self._topic, key=enc.key, value=enc.value,
                                               headers=list(enc.headers)))
        deadline = Deadline(PUBLISH_TIMEOUT_S)
        for f in futures:  # raises KafkaTimeoutError or the delivery error
            f.get(timeout=deadline.remaining())

    def close(self) -> None:
        try:
            self._producer.close(timeout=5)
        except Exception as exc:  # a wedged producer cannot flush; it is being replaced
            log.info("closing the raw producer: %s", exc)


class BusPublishClient:
    """``KafkaBus.publish_many``: send the batch, return once every event is acknowledged."""

    def __init__(self, bootstrap_servers: str, topic_prefix: str, generation: int, *,
                 client: str = "kafka-python") -> None:
        from offsetlab.bus import KafkaBus, KafkaBusConfig

        self._bus = KafkaBus(chaos_registry(topic_prefix), KafkaBusConfig(
            bootstrap_servers=bootstrap_servers, publish_timeout_s=PUBLISH_TIMEOUT_S, client=client,
            create_topics=False, name=f"chaos-publisher-{generation}"))

    def publish(self, events: list[ChaosEvent]) -> None:
        self._bus.publish_many(events)

    def close(self) -> None:
        try:
            self._bus.close(timeout_s=5)
        except Exception as exc:  # best effort: it is being replaced
            log.info("closing the publishing bus: %s", exc)


class Publisher(threading.Thread):
    """Publishes events ``0..n-1`` in batches paced over ``duration_s``.

    An event counts as acknowledged only when a publish call that contained it returned. When
    a call fails, the client is closed and a new one made (an application would do the same
    with a producer that stopped answering; see ``rebuilds``), and the same events (same event
    ids) are published again, until ``give_up_at``. So an event can be written twice (the
    failed call may have written it): the run counts those from the topic."""

    def __init__(self, make_client: Callable[[int], PublishClient], *, n: int, batch: int,
                 duration_s: float, abort: threading.Event) -> None:
        super().__init__(name="chaos-publisher", daemon=True)
        self._make_client, self._n, self._batch = make_client, n, batch
        self._duration, self._abort = duration_s, abort
        self.acked: set[int] = set()
        self.failures = 0
        self.rebuilds = 0
        self.failure_log: list[str] = []
        self.error: BaseException | None = None
        self.started_at = self.ended_at = 0.0
        self.give_up_at = float("inf")

    def run(self) -> None:
        self.started_at = time.monotonic()
        events = [ChaosEvent(seq=seq) for seq in range(self._n)]
        chunks = [events[i:i + self._batch] for i in range(0, self._n, self._batch)]
        pace = self._duration / max(1, len(chunks))
        client: PublishClient | None = None
        try:
            client = self._make_client(0)
            for k, chunk in enumerate(chunks):
                wait = self.started_at + k * pace - time.monotonic()
                if wait > 0 and self._abort.wait(wait):
                    return
                while not self._abort.is_set() and time.monotonic() < self.give_up_at:
                    began = time.monotonic()
                    try:
                        client.publish(chunk)
                    except Exception as exc:  # not acknowledged: new client, same events
                        self.failures += 1
                        self.failure_log.append(
                            f"+{began - self.started_at:.1f}s batch {k} ({len(chunk)} events) "
                            f"failed after {time.monotonic() - began:.1f} s: "
                            f"{type(exc).__name__}: {str(exc)[:200]}")
                        log.warning("%s", self.failure_log[-1])
                        client.close()
                        self.rebuilds += 1
                        client = self._make_client(self.rebuilds)
                        continue
                    self.acked.update(e.seq for e in chunk)
                    break
                else:
                    return
        except BaseException as exc:  # reported by the orchestrator
            self.error = exc
        finally:
            if client is not None:
                client.close()
            self.ended_at = time.monotonic()
