"""The Kafka bus's two producers: one for publishing, one for re-producing.

The seed wanted different behaviour for the two (``kafka-consumer-questions.md``): a
publish is on a request path and must fail within a bounded time, naming the broker it
could not reach; a retry copy or dead letter is written from inside a consumer and must
be *acknowledged* before the source offset is committed, so it may wait longer.
:class:`Producers` owns both ``KafkaProducer`` objects (built lazily, on first use, so a
bus can be made while the broker is still starting) and turns every client failure into
:class:`~offsetlab.bus.errors.PublishError` naming the topic, bootstrap servers and timeout.

Timeouts: the publish producer's ``max_block_ms`` (metadata wait in ``send``),
``bootstrap_timeout_ms`` and ``delivery_timeout_ms`` default to the publish timeout, and
``publish`` waits for the acknowledgement no longer than what is left of it. So a broker
that does not answer fails a publish after about the timeout, and the timed-out record
expires in the producer instead of being written minutes later behind the caller's back.
``reconnect_backoff_max_ms`` defaults to 1 s (kafka-python: 30 s), so after an outage the
producers try the broker again within a second instead of failing publishes for up to 30 s.

A publish that timed out replaces the publish producer: after a broker restart,
kafka-python 3.0.12's idempotent producer sometimes stops completing sends for good (5 of 8
trials in ``offsetlab chaos``), so every later publish on the same client would time out too.
The next publish builds a new client.

Happy-path cost is that of raw kafka-python: ``publish`` is ``send().get()``;
:meth:`Producers.publish_many` sends all then waits all; re-produces are sent without
waiting and acknowledged together (:meth:`Producers.wait_all`) once per poll batch.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from offsetlab.bus.config import servers_text
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.errors import BusStateError, ConfigError, PublishError
from offsetlab.bus.interface import Receipt
from offsetlab.bus.transports.kafka_python.compat import close_now, io_threads, reap_io_threads

__all__ = ["Producers", "PUBLISH", "REPRODUCE"]

PUBLISH = "publish"
REPRODUCE = "reproduce"

Headers = Sequence[tuple[str, bytes]]


def producer_kwargs(
    *,
    bootstrap_servers: str | tuple[str, ...],
    client_id: str,
    client_settings: Mapping[str, Any],
    settings: Mapping[str, Any],
    timeout_s: float,
) -> dict[str, Any]:
    """KafkaProducer keywords: client settings, then timeout defaults, then ``settings``."""
    timeout_ms = max(1, round(timeout_s * 1000))
    kwargs: dict[str, Any] = {k: v for k, v in client_settings.items()
                              if k in KafkaProducer.DEFAULT_CONFIG}
    linger = int(settings.get("linger_ms", kwargs.get("linger_ms", 0)))
    request = int(settings.get("request_timeout_ms", min(30_000, timeout_ms)))
    kwargs.setdefault("reconnect_backoff_max_ms", 1000)
    kwargs.update(
        max_block_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=request,
        delivery_timeout_ms=max(timeout_ms, linger + request),
    )
    kwargs.update(settings)
    servers = bootstrap_servers
    kwargs["bootstrap_servers"] = list(servers) if isinstance(servers, tuple) else servers
    kwargs["client_id"] = client_id
    return kwargs


def _describe(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


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
        self._kwargs = {
            kind: producer_kwargs(bootstrap_servers=bootstrap_servers,
                                  client_id=f"{name}-{kind}", client_settings=client_settings,
                                  settings=settings, timeout_s=self.timeouts[kind])
            for kind, settings in ((PUBLISH, publish_settings), (REPRODUCE, reproduce_settings))
        }
        for kind, settings in ((PUBLISH, publish_settings), (REPRODUCE, reproduce_settings)):
            kw = self._kwargs[kind]
            if kw["delivery_timeout_ms"] < kw.get("linger_ms", 0) + kw["request_timeout_ms"]:
                raise ConfigError(
                    f"KafkaBusConfig.{kind}_producer: delivery_timeout_ms "
                    f"({kw['delivery_timeout_ms']}) must be >= linger_ms + request_timeout_ms "
                    f"({kw.get('linger_ms', 0)} + {kw['request_timeout_ms']}); settings given: "
                    f"{dict(settings)}"
                )
        self._producers: dict[str, KafkaProducer] = {}
        self._lock = threading.Lock()
        self._closed = False

    def kwargs(self, kind: str) -> dict[str, Any]:
        """The keywords the ``kind`` producer is (or will be) built with."""
        return dict(self._kwargs[kind])

    def _servers(self) -> str:
        return servers_text(self.bootstrap_servers)

    def producer(self, kind: str) -> KafkaProducer:
        """The ``kind`` producer, built on first use; ``PublishError`` if it cannot connect."""
        producer = self._producers.get(kind)
        if producer is not None:
            return producer
        with self._lock:
            if self._closed:
                raise BusStateError(f"{kind}: the KafkaBus is closed; make a new bus")
            producer = self._producers.get(kind)
            if producer is None:
                kwargs = self._kwargs[kind]
                before = io_threads()
                try:
                    producer = KafkaProducer(**kwargs)
                except Exception as exc:
                    reap_io_threads(before, kwargs["client_id"])
                    raise PublishError(
                        f"the {kind} producer could not connect to bootstrap servers "
                        f"{self._servers()} within {kwargs['bootstrap_timeout_ms']} ms "
                        f"({_describe(exc)}); is the broker up and the address right?"
                    ) from exc
                self._producers[kind] = producer
        return producer

    def _discard(self, kind: str, producer: KafkaProducer) -> None:
        """Drop ``producer`` so the next use builds a new one; close it without waiting
        (its unacknowledged records were already reported as not written)."""
        with self._lock:
            if kind not in self._producers or self._producers[kind] is not producer:
                return
            del self._producers[kind]
        close_now(producer)  # its pending records fail; its sender thread stops

    def _error(self, kind: str, topic: str, exc: BaseException, *, sent: str = "") -> PublishError:
        timeout = self.timeouts[kind]
        if isinstance(exc, kafka_errors.KafkaTimeoutError):
            why = f"no acknowledgement within the {timeout:g} s timeout"
        else:
            why = _describe(exc)
        error = PublishError(
            f"{kind} to topic {topic!r} was not acknowledged (bootstrap servers: "
            f"{self._servers()}, timeout: {timeout:g} s; {why}){sent}; treat the record as "
            "not written (it may still appear if the broker took it just before the timeout)"
        )
        error.__cause__ = exc
        return error

    # -- publishing (ack per call) -------------------------------------------------------

    def publish(self, topic: str, value: bytes | None, key: bytes | None,
                headers: Headers) -> Receipt:
        """Send one record and wait for its acknowledgement (``send().get()``)."""
        deadline = Deadline(self.timeouts[PUBLISH])
        producer = self.producer(PUBLISH)
        try:
            future = producer.send(topic, value=value, key=key, headers=list(headers))
            meta = future.get(timeout=deadline.left())
        except kafka_errors.KafkaError as exc:
            if isinstance(exc, kafka_errors.KafkaTimeoutError):
                self._discard(PUBLISH, producer)
            raise self._error(PUBLISH, topic, exc) from exc
        return Receipt(meta.topic, meta.partition, meta.offset)

    def publish_many(
        self, records: Sequence[tuple[str, bytes | None, bytes | None, Headers]]
    ) -> list[Receipt]:
        """Send every ``(topic, value, key, headers)``, then wait for all acknowledgements.

        Raises ``PublishError`` at the first record not acknowledged within the publish
        timeout (counted from the call); records before it were acknowledged.
        """
        deadline = Deadline(self.timeouts[PUBLISH])
        producer = self.producer(PUBLISH)
        futures: list[tuple[str, FutureRecordMetadata]] = []
        for topic, value, key, headers in records:
            try:
                futures.append((topic, producer.send(topic, value=value, key=key,
                                                     headers=list(headers))))
            except kafka_errors.KafkaError as exc:
                raise self._error(PUBLISH, topic, exc,
                                  sent=f"; record {len(futures)} of {len(records)}") from exc
        receipts: list[Receipt] = []
        for i, (topic, future) in enumerate(futures):
            try:
                meta = future.get(timeout=deadline.left())
            except kafka_errors.KafkaError as exc:
                if isinstance(exc, kafka_errors.KafkaTimeoutError):
                    self._discard(PUBLISH, producer)
                raise self._error(PUBLISH, topic, exc,
                                  sent=f"; record {i} of {len(futures)}, {i} acknowledged") from exc
            receipts.append(Receipt(meta.topic, meta.partition, meta.offset))
        return receipts

    # -- re-producing (send now, acknowledge per batch) -------------------------------------

    def send_copy(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers,
                  partition: int | None) -> FutureRecordMetadata:
        """Send a retry copy or dead letter without waiting (``PublishError`` if refused)."""
        producer = self.producer(REPRODUCE)
        try:
            return producer.send(topic, value=value, key=key, headers=list(headers),
                                 partition=partition)
        except kafka_errors.KafkaError as exc:
            raise self._error(REPRODUCE, topic, exc) from exc

    def partitions(self, topic: str) -> frozenset[int]:
        """The partitions of ``topic`` as the reproduce producer sees them."""
        try:
            return frozenset(self.producer(REPRODUCE).partitions_for(topic) or ())
        except kafka_errors.KafkaError as exc:
            raise self._error(REPRODUCE, topic, exc) from exc

    def wait_all(self, items: Sequence[tuple[str, FutureRecordMetadata]]
                 ) -> list[Receipt | PublishError]:
        """Wait for the ``(topic, future)`` items within one reproduce timeout."""
        deadline = Deadline(self.timeouts[REPRODUCE])
        out: list[Receipt | PublishError] = []
        for topic, future in items:
            try:
                meta = future.get(timeout=deadline.left())
            except kafka_errors.KafkaError as exc:
                out.append(self._error(REPRODUCE, topic, exc))
            else:
                out.append(Receipt(meta.topic, meta.partition, meta.offset))
        return out

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush and close both producers (idempotent)."""
        with self._lock:
            self._closed = True
            producers, self._producers = dict(self._producers), {}
        for producer in producers.values():
            try:
                producer.close(timeout=timeout_s)
            except Exception:  # records still pending after the timeout: drop them
                close_now(producer)
