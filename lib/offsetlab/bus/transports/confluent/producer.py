"""The Kafka bus's two producers on confluent-kafka: one for publishing, one for re-producing.

The same design and promises as the kafka-python transport's
(:mod:`offsetlab.bus.transports.kafka_python.producer`): :class:`Producers` owns two
``confluent_kafka.Producer`` objects, built lazily (a bus can be made while the broker is
still starting); a publish is bounded by ``publish_timeout_s`` and fails with
:class:`~offsetlab.bus.errors.PublishError` naming the topic, bootstrap servers and
timeout; re-produced copies are sent without waiting and acknowledged together
(:meth:`Producers.wait_all`) within ``reproduce_timeout_s``.

Timeouts: librdkafka's ``delivery.timeout.ms`` (``message.timeout.ms``) defaults to the
producer's timeout, so a record nobody acknowledged expires in the client instead of being
written later; ``socket.timeout.ms`` to at most 30 s of it; building a producer asks the
broker for metadata within ``bootstrap_timeout_ms`` (the timeout too), so an address nobody
answers fails the first publish after about the timeout, naming it. ``max_block_ms`` bounds
a send waiting for room in a full local queue (librdkafka's ``produce()`` never blocks).
``reconnect.backoff.max.ms`` defaults to 1 s, keys are hashed with murmur2 as in Java and
kafka-python, and ``linger.ms`` is 0 (:data:`~offsetlab.bus.transports.confluent.compat.PRODUCER_DEFAULTS`).
A publish that timed out replaces the publish producer (purged, dropped), as on kafka-python.

Acknowledgements: every record's ``on_delivery`` callback (a :class:`Delivery`; in
:meth:`Producers.publish_many`, which sends all then waits, an entry of the batch's lists)
is served by whoever waits, with ``Producer.poll()`` in slices of :data:`POLL_SLICE_S`
(several threads may wait on one producer: one may serve another's callback).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from offsetlab.bus.config import servers_text
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.errors import BusStateError, ConfigError, PublishError
from offsetlab.bus.interface import Receipt
from offsetlab.bus.transports.confluent.compat import (
    LIBRDKAFKA_LOGGER,
    PRODUCER_DEFAULTS,
    QUIET_ERRORS,
    error_of,
)
from offsetlab.bus.transports.confluent.settings import PRODUCER, translate

__all__ = ["Producers", "Delivery", "PUBLISH", "REPRODUCE", "POLL_SLICE_S", "producer_config"]

PUBLISH = "publish"
REPRODUCE = "reproduce"
POLL_SLICE_S = 0.05
"""Longest single ``Producer.poll()`` of a wait (a wait whose callback another thread served
notices within this)."""
_OPPORTUNISTIC_POLL_EVERY = 1000

Headers = Sequence[tuple[str, bytes]]
"""Any sequence; confluent-kafka takes a list only (the bus's are cached tuples: copied)."""


class Delivery:
    """One record's pending acknowledgement, completed by its ``on_delivery`` callback.

    The callback keeps the partition and offset (``offset`` stays ``None`` until then) and
    the error, not librdkafka's message: a kept message holds a copy of the record, and
    50,000 of them cost a publish_many 1.2 us per record more here (memory and the GC).
    """

    __slots__ = ("error", "partition", "offset")

    def __init__(self) -> None:
        self.offset: int | None = None

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        self.error = error
        self.partition = message.partition()
        self.offset = message.offset()

    @property
    def done(self) -> bool:
        return self.offset is not None

    def receipt(self, topic: str) -> Receipt:
        assert self.offset is not None
        return _new_receipt(topic, self.partition or 0, self.offset)


class _Batch:
    """The acknowledgements of one ``publish_many``: record ``i``'s partition, offset
    (``None`` until acknowledged) and error (only records that have one)."""

    __slots__ = ("partitions", "offsets", "errors")

    def __init__(self, n: int) -> None:
        self.partitions: list[int | None] = [0] * n
        self.offsets: list[int | None] = [None] * n
        self.errors: dict[int, KafkaError] = {}


class _Ack:
    """Record ``i``'s ``on_delivery`` callback in a :class:`_Batch`. Only librdkafka holds
    it, until the report: a batch of 100k keeps 100k lists' slots, not 100k objects the
    garbage collector walks (1 to 2 us a record of collections here with a Delivery each)."""

    __slots__ = ("batch", "i")
    batch: _Batch
    i: int

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        batch, i = self.batch, self.i
        if error is not None:
            batch.errors[i] = error
        batch.partitions[i] = message.partition()
        batch.offsets[i] = message.offset()


def _wait_for(producer: Producer, offsets: list[int | None], i: int, deadline: Deadline) -> bool:
    """:meth:`Producers._wait` for record ``i`` of a batch."""
    while offsets[i] is None:
        left = deadline.left()
        if left <= 0:
            producer.poll(0)
            return offsets[i] is not None
        producer.poll(min(left, POLL_SLICE_S))
    return True


def _new_receipt(topic: str, partition: int | None, offset: int | None) -> Receipt:
    """``Receipt(topic, partition, offset)`` without the frozen dataclass's ``__init__``
    (its Python frame): 0.69 instead of 0.77 us a kept receipt here; writing ``__dict__``
    instead would give each receipt a dict of its own (0.8 us, 64 bytes more)."""
    receipt = _object_new(Receipt)
    _set(receipt, "topic", topic)
    _set(receipt, "partition", partition)
    _set(receipt, "offset", offset)
    return receipt


_object_new, _set = object.__new__, object.__setattr__


def producer_config(
    *,
    bootstrap_servers: str | tuple[str, ...],
    client_id: str,
    client_settings: Mapping[str, Any],
    settings: Mapping[str, Any],
    timeout_s: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(librdkafka settings, transport options)``: defaults, timeouts, client settings,
    then ``settings``."""
    timeout_ms = max(1, round(timeout_s * 1000))
    conf: dict[str, Any] = dict(PRODUCER_DEFAULTS)
    conf.update({"reconnect.backoff.max.ms": 1000, "delivery.timeout.ms": timeout_ms,
                 "socket.timeout.ms": max(10, min(30_000, timeout_ms))})
    options: dict[str, Any] = {"bootstrap_timeout_ms": timeout_ms, "max_block_ms": timeout_ms}
    for given in (client_settings, settings):
        more, more_options = translate(given, PRODUCER)
        for key, value in more.items():
            conf.pop(key, None)
            conf[key] = value
        options.update(more_options)
    conf["bootstrap.servers"] = servers_text(bootstrap_servers)
    conf["client.id"] = client_id
    conf.setdefault("logger", LIBRDKAFKA_LOGGER)
    return conf, options


def _describe(exc: BaseException) -> str:
    error = error_of(exc)
    if error is not None:
        return f"{error.name()}: {error.str()}"
    text, name = str(exc), type(exc).__name__
    return (text if text.startswith(name) else f"{name}: {text}") if text else name


class Producers:
    """The bus's publish and reproduce producers (thread-safe, lazily built)."""

    def __init__(
        self,
        *,
        bootstrap_servers: str | tuple[str, ...],
        name: str,
        client_settings: Mapping[str, Any],
        publish_settings: Mapping[str, Any],
        reproduce_settings: Mapping[str, Any],
        publish_timeout_s: float,
        reproduce_timeout_s: float,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeouts = {PUBLISH: publish_timeout_s, REPRODUCE: reproduce_timeout_s}
        self._config: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for kind, settings in ((PUBLISH, publish_settings), (REPRODUCE, reproduce_settings)):
            conf, options = producer_config(
                bootstrap_servers=bootstrap_servers, client_id=f"{name}-{kind}",
                client_settings=client_settings, settings=settings,
                timeout_s=self.timeouts[kind])
            delivery, linger = conf["delivery.timeout.ms"], conf.get("linger.ms", 0)
            if delivery and float(linger) >= float(delivery):
                raise ConfigError(
                    f"KafkaBusConfig.{kind}_producer: delivery_timeout_ms ({delivery}) must be "
                    f"> linger_ms ({linger}) (librdkafka); settings given: {dict(settings)}")
            self._config[kind] = (conf, options)
        self._producers: dict[str, Producer] = {}
        self._lock = threading.Lock()
        self._closed = False

    def config(self, kind: str) -> dict[str, Any]:
        """The librdkafka settings the ``kind`` producer is (or will be) built with."""
        return dict(self._config[kind][0])

    def _servers(self) -> str:
        return servers_text(self.bootstrap_servers)

    def producer(self, kind: str) -> Producer:
        """The ``kind`` producer, built on first use; ``PublishError`` if it cannot connect."""
        producer = self._producers.get(kind)
        if producer is not None:
            return producer
        with self._lock:
            if self._closed:
                raise BusStateError(f"{kind}: the KafkaBus is closed; make a new bus")
            producer = self._producers.get(kind)
            if producer is None:
                producer = self._build(kind)
                self._producers[kind] = producer
        return producer

    def _build(self, kind: str) -> Producer:
        conf, options = self._config[kind]
        conf = dict(conf, error_cb=self._on_error)
        timeout_ms = options["bootstrap_timeout_ms"]
        try:
            producer = Producer(conf)
        except KafkaException as exc:
            raise ConfigError(f"KafkaBusConfig.{kind}_producer: librdkafka refused the "
                              f"settings ({_describe(exc)})") from exc
        try:
            producer.list_topics(timeout=timeout_ms / 1000)
        except KafkaException as exc:
            _close(producer)
            raise PublishError(
                f"the {kind} producer could not connect to bootstrap servers "
                f"{self._servers()} within {timeout_ms} ms ({_describe(exc)}); is the broker "
                "up and the address right?"
            ) from exc
        return producer

    @staticmethod
    def _on_error(error: KafkaError) -> None:
        if error.code() not in QUIET_ERRORS:
            LIBRDKAFKA_LOGGER.warning("producer: %s", error)

    def _discard(self, kind: str, producer: Producer) -> None:
        """Drop ``producer`` so the next use builds a new one; its queued records are purged
        (they were already reported as not written)."""
        with self._lock:
            if self._producers.get(kind) is not producer:
                return
            del self._producers[kind]
        _close(producer, purge=True)

    def _error(self, kind: str, topic: str, exc: BaseException | KafkaError | None, *,
               sent: str = "") -> PublishError:
        timeout = self.timeouts[kind]
        if exc is None:
            why = f"no acknowledgement within the {timeout:g} s timeout"
        elif isinstance(exc, KafkaError):
            why = f"{exc.name()}: {exc.str()}"
        else:
            why = _describe(exc)
        error = PublishError(
            f"{kind} to topic {topic!r} was not acknowledged (bootstrap servers: "
            f"{self._servers()}, timeout: {timeout:g} s; {why}){sent}; treat the record as "
            "not written (it may still appear if the broker took it just before the timeout)"
        )
        if isinstance(exc, BaseException):
            error.__cause__ = exc
        elif exc is not None:
            error.__cause__ = KafkaException(exc)
        return error

    def _send(self, producer: Producer, kind: str, topic: str, value: bytes | None,
              key: bytes | None, headers: Headers, partition: int | None,
              deadline: Deadline) -> Delivery:
        """``produce()`` one record; a full local queue is waited out up to ``max_block_ms``."""
        delivery = Delivery()
        self._produce(producer, kind, topic, value, key, headers, partition, deadline, delivery)
        return delivery

    def _produce(self, producer: Producer, kind: str, topic: str, value: bytes | None,
                 key: bytes | None, headers: Headers, partition: int | None,
                 deadline: Deadline, delivery: Delivery | _Ack) -> None:
        block = Deadline(self._config[kind][1]["max_block_ms"] / 1000)
        while True:
            try:
                producer.produce(topic, value, key, -1 if partition is None else partition,
                                 on_delivery=delivery, headers=list(headers) if headers else None)
                return
            except BufferError:
                left = min(block.left(), deadline.left())
                if left <= 0:
                    raise
                producer.poll(min(left, POLL_SLICE_S))

    @staticmethod
    def _wait(producer: Producer, delivery: Delivery, deadline: Deadline) -> bool:
        while delivery.offset is None:
            left = deadline.left()
            if left <= 0:
                producer.poll(0)
                return delivery.offset is not None
            producer.poll(min(left, POLL_SLICE_S))
        return True

    # -- publishing (ack per call) -------------------------------------------------------

    def publish(self, topic: str, value: bytes | None, key: bytes | None,
                headers: Headers) -> Receipt:
        """Send one record and wait for its acknowledgement."""
        deadline = Deadline(self.timeouts[PUBLISH])
        producer = self.producer(PUBLISH)
        try:
            delivery = self._send(producer, PUBLISH, topic, value, key, headers, None, deadline)
        except (KafkaException, BufferError) as exc:
            raise self._error(PUBLISH, topic, exc) from exc
        if not self._wait(producer, delivery, deadline):
            self._discard(PUBLISH, producer)
            raise self._error(PUBLISH, topic, None)
        if delivery.error is not None:
            raise self._error(PUBLISH, topic, delivery.error)
        return delivery.receipt(topic)

    def publish_many(
        self, records: Sequence[tuple[str, bytes | None, bytes | None, Headers]]
    ) -> list[Receipt]:
        """Send every ``(topic, value, key, headers)``, then wait for all acknowledgements.

        Raises ``PublishError`` at the first record not acknowledged within the publish
        timeout (counted from the call); records before it were acknowledged.
        """
        deadline = Deadline(self.timeouts[PUBLISH])
        producer = self.producer(PUBLISH)
        total = len(records)
        batch = _Batch(total)
        topics: list[str] = []
        append, produce, poll, ack = topics.append, producer.produce, producer.poll, _Ack
        # read once (the bus's records are encoded as they are read), in slices with a
        # poll(0) between (callbacks served as they come) instead of a count per record
        todo = iter(records)
        while True:
            before = len(topics)
            for i, (topic, value, key, headers) in enumerate(
                    islice(todo, _OPPORTUNISTIC_POLL_EVERY), before):
                on_delivery = ack()
                on_delivery.batch, on_delivery.i = batch, i
                try:
                    produce(topic, value, key, on_delivery=on_delivery,
                            headers=list(headers) if headers else None)
                except BufferError:
                    try:
                        self._produce(producer, PUBLISH, topic, value, key, headers, None,
                                      deadline, on_delivery)
                    except (KafkaException, BufferError) as exc:
                        raise self._error(PUBLISH, topic, exc,
                                          sent=f"; record {i} of {total}") from exc
                except KafkaException as exc:
                    raise self._error(PUBLISH, topic, exc, sent=f"; record {i} of {total}") from exc
                append(topic)
            poll(0)
            if len(topics) - before < _OPPORTUNISTIC_POLL_EVERY:
                break
        receipts: list[Receipt] = []
        done, sent = receipts.append, len(topics)
        offsets, partitions, errors = batch.offsets, batch.partitions, batch.errors
        for i, topic in enumerate(topics):
            offset = offsets[i]
            if offset is None:
                if not _wait_for(producer, offsets, i, deadline):
                    self._discard(PUBLISH, producer)
                    raise self._error(PUBLISH, topic, None,
                                      sent=f"; record {i} of {sent}, {i} acknowledged")
                offset = offsets[i]
            if errors and i in errors:
                raise self._error(PUBLISH, topic, errors[i],
                                  sent=f"; record {i} of {sent}, {i} acknowledged")
            done(_new_receipt(topic, partitions[i], offset))
        return receipts

    # -- re-producing (send now, acknowledge per batch) -------------------------------------

    def send_copy(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
                  partition: int | None) -> Delivery:
        """Send a retry copy or dead letter without waiting (``PublishError`` if refused)."""
        producer = self.producer(REPRODUCE)
        try:
            delivery = self._send(producer, REPRODUCE, topic, value, key, headers, partition,
                                  Deadline(self.timeouts[REPRODUCE]))
        except (KafkaException, BufferError) as exc:
            raise self._error(REPRODUCE, topic, exc) from exc
        producer.poll(0)
        return delivery

    def partitions(self, topic: str) -> frozenset[int]:
        """The partitions of ``topic`` as the reproduce producer sees them."""
        try:
            metadata = self.producer(REPRODUCE).list_topics(
                topic, timeout=self.timeouts[REPRODUCE])
        except KafkaException as exc:
            raise self._error(REPRODUCE, topic, exc) from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return frozenset()
        return frozenset(found.partitions)

    def wait_all(self, items: Sequence[tuple[str, Delivery]]) -> list[Receipt | PublishError]:
        """Wait for the ``(topic, delivery)`` items within one reproduce timeout."""
        deadline = Deadline(self.timeouts[REPRODUCE])
        producer = self._producers.get(REPRODUCE)
        out: list[Receipt | PublishError] = []
        for topic, delivery in items:
            if delivery.offset is None and (producer is None
                                      or not self._wait(producer, delivery, deadline)):
                out.append(self._error(REPRODUCE, topic, None))
            elif delivery.error is not None:
                out.append(self._error(REPRODUCE, topic, delivery.error))
            else:
                out.append(delivery.receipt(topic))
        return out

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush and close both producers (idempotent)."""
        with self._lock:
            self._closed = True
            producers, self._producers = dict(self._producers), {}
        for producer in producers.values():
            _close(producer, flush_s=timeout_s)


def _close(producer: Producer, *, purge: bool = False, flush_s: float = 0.0) -> None:
    """Best effort: purge (optionally), flush, close."""
    try:
        if purge:
            producer.purge()
        producer.flush(flush_s)
        producer.close()
    except Exception:  # the client is going away either way
        pass
