"""The raw sides of ``offsetlab bench``: what an application does without the bus, on
kafka-python or confluent-kafka, and the clocks every side is timed with.

publish (the bus's producer settings: ``acks=all`` and the bench's linger; all N sent, then
flushed once)
    - ``raw``: send the very bytes the bus writes (envelopes, keys and headers encoded
      before the clock starts);
    - ``raw+json``: the same, but each value is JSON-encoded inside the loop from an
      equivalent payload (a dict with the envelope's fields, built before the clock, as the
      bus's events are) and each key made from its number: what a raw application that
      serializes its own data pays.

consume (a poll loop, a no-op handler per record, a synchronous commit after each batch of
up to 500 records)
    - ``raw``: nothing done with a record;
    - ``raw+json``: the value JSON-decoded in the handler.

The raw+json sides use the JSON library the bus uses (orjson when installed, else the
standard library's ``json``), so that "bus minus raw+json" is the bus's own cost, not a
difference between JSON libraries.

confluent-kafka's raw sides are the same operations on ``confluent_kafka.Producer``
(``produce``; ``poll(0)`` every 1000 records as the bus's transport does; ``flush``) and
``Consumer`` (``consume(500, 0.1)``; ``commit(asynchronous=False)`` after each batch), with
the bus transport's producer defaults (murmur2 partitioner).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from offsetlab.bus import json_codec

__all__ = ["Timing", "Clock", "JsonLib", "json_lib", "PRODUCER_SETTINGS", "CONSUMER_BATCH",
           "RawRecord", "produce_raw", "consume_raw"]

#: producer settings every side uses (kafka-python names; ``offsetlab bench --linger-ms``
#: replaces the linger)
PRODUCER_SETTINGS: dict[str, Any] = {"acks": "all", "linger_ms": 0}
#: records per poll on every side (kafka-python's ``max_poll_records`` default, which the
#: bus's confluent-kafka transport uses too)
CONSUMER_BATCH = 500
#: confluent-kafka: serve delivery reports every this many records (as the bus's transport)
_POLL_EVERY = 1000

#: ``(key, value, headers)`` of one record to produce
RawRecord = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of a measurement and the CPU seconds this process spent in it (all
    its threads: kafka-python's IO thread, librdkafka's threads, the bus's runner). CPU time
    is the steadier number on a shared machine; the wall clock is what a rate is about."""

    wall_s: float
    cpu_s: float

    @classmethod
    def since(cls, wall0: float, cpu0: float) -> Timing:
        return cls(time.perf_counter() - wall0, time.process_time() - cpu0)


class Clock:
    """First and last moment a handler ran, and a count; ``done`` once ``n`` were handled."""

    def __init__(self, n: int) -> None:
        self.n, self.count = n, 0
        self.first = self.first_cpu = 0.0
        self.timing = Timing(0.0, 0.0)
        self.done = threading.Event()

    def tick(self) -> None:
        if self.count == 0:
            self.first, self.first_cpu = time.perf_counter(), time.process_time()
        self.count += 1
        if self.count == self.n:
            self.timing = Timing.since(self.first, self.first_cpu)
            self.done.set()


@dataclass(frozen=True)
class JsonLib:
    """A raw application's JSON: ``dumps(obj) -> bytes`` (the bus's layout: compact, sorted
    keys) and ``loads(bytes)``."""

    name: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def json_lib() -> JsonLib:
    """The JSON library the bus uses (:func:`offsetlab.bus.json_codec.backend`)."""
    if json_codec.backend().startswith("orjson"):
        import orjson

        option = orjson.OPT_SORT_KEYS
        return JsonLib(json_codec.backend(), lambda obj: orjson.dumps(obj, option=option),
                       orjson.loads)
    encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
    return JsonLib("json (stdlib)", lambda obj: encode(obj).encode(), json.loads)


# -- publish --------------------------------------------------------------------------------------
def produce_raw(client: str, servers: str, topic: str, *, records: Sequence[RawRecord] = (),
                payloads: Sequence[dict[str, Any]] = (), headers: list[tuple[str, bytes]],
                dumps: Callable[[Any], bytes] | None = None,
                settings: dict[str, Any] = PRODUCER_SETTINGS) -> Timing:
    """Time to send every record and flush once: ``records`` as they are, or (``dumps``
    given) each of ``payloads`` JSON-encoded in the loop with key ``str(i)``; ``settings``:
    ``acks`` and ``linger_ms`` (kafka-python names)."""
    if client == "kafka-python":
        return _produce_kafka_python(servers, topic, records, payloads, headers, dumps, settings)
    return _produce_confluent(servers, topic, records, payloads, headers, dumps, settings)


def _produce_kafka_python(servers: str, topic: str, records: Sequence[RawRecord],
                          payloads: Sequence[dict[str, Any]], headers: list[tuple[str, bytes]],
                          dumps: Callable[[Any], bytes] | None,
                          settings: dict[str, Any]) -> Timing:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, **settings)
    try:
        producer.partitions_for(topic)  # metadata outside the clock, as for the bus
        send = producer.send
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if dumps is not None:
            for i, payload in enumerate(payloads):
                send(topic, key=str(i).encode(), value=dumps(payload), headers=headers)
        else:
            for key, value, hs in records:
                send(topic, key=key, value=value, headers=hs)
        producer.flush()
        return Timing.since(wall0, cpu0)
    finally:
        producer.close(timeout=10)


def _confluent_producer(servers: str, settings: dict[str, Any]) -> Any:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": servers, "acks": settings["acks"],
                     "linger.ms": settings["linger_ms"], "partitioner": "murmur2_random"})


def _produce_confluent(servers: str, topic: str, records: Sequence[RawRecord],
                       payloads: Sequence[dict[str, Any]], headers: list[tuple[str, bytes]],
                       dumps: Callable[[Any], bytes] | None,
                       settings: dict[str, Any]) -> Timing:
    producer = _confluent_producer(servers, settings)
    producer.list_topics(topic, timeout=30)  # metadata outside the clock, as for the bus
    produce, poll = producer.produce, producer.poll

    def send(key: bytes | None, value: bytes, hs: list[tuple[str, bytes]]) -> None:
        while True:
            try:
                produce(topic, value, key, headers=hs)
                return
            except BufferError:  # local queue full: serve reports, try again
                poll(0.05)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    if dumps is not None:
        for i, payload in enumerate(payloads):
            send(str(i).encode(), dumps(payload), headers)
            if i % _POLL_EVERY == 0:
                poll(0)
    else:
        for i, (key, value, hs) in enumerate(records):
            send(key, value, hs)
            if i % _POLL_EVERY == 0:
                poll(0)
    left = producer.flush(120)
    timing = Timing.since(wall0, cpu0)
    if left:
        raise TimeoutError(f"raw confluent-kafka producer: {left} records not acknowledged")
    return timing


# -- consume --------------------------------------------------------------------------------------
def _no_op(value: bytes | None) -> None:
    """The raw side's handler (the bus's is a no-op too)."""


def consume_raw(client: str, servers: str, topic: str, group: str, n: int, *,
                loads: Callable[[Any], Any] | None, timeout_s: float) -> Timing:
    """Time between the first and the n-th record handled by a poll loop that commits once
    per batch (``loads``: decode each value)."""
    if client == "kafka-python":
        return _consume_kafka_python(servers, topic, group, n, loads, timeout_s)
    return _consume_confluent(servers, topic, group, n, loads, timeout_s)


def _consume_kafka_python(servers: str, topic: str, group: str, n: int,
                          loads: Callable[[Any], Any] | None, timeout_s: float) -> Timing:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=servers, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest",
                             max_poll_records=CONSUMER_BATCH)
    clock, handle = Clock(n), loads or _no_op
    deadline = time.monotonic() + timeout_s
    try:
        while not clock.done.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw kafka-python consumer of {topic} handled "
                                   f"{clock.count} of {n} records in {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=100).values():
                for record in records:
                    handle(record.value)
                    clock.tick()
            if clock.count:
                consumer.commit()
    finally:
        consumer.close(autocommit=False)
    return clock.timing


def _consume_confluent(servers: str, topic: str, group: str, n: int,
                       loads: Callable[[Any], Any] | None, timeout_s: float) -> Timing:
    from confluent_kafka import Consumer, KafkaException

    consumer = Consumer({"bootstrap.servers": servers, "group.id": group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    clock, handle = Clock(n), loads or _no_op
    deadline = time.monotonic() + timeout_s
    try:
        while not clock.done.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw confluent-kafka consumer of {topic} handled "
                                   f"{clock.count} of {n} records in {timeout_s:.0f} s")
            messages = consumer.consume(CONSUMER_BATCH, 0.1)
            handled = False
            for m in messages:
                error = m.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    continue
                handle(m.value())
                clock.tick()
                handled = True
            if handled:
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return clock.timing
