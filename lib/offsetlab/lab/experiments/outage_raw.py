"""The outage's raw kafka-python pipelines (see :mod:`~offsetlab.lab.experiments.outage`).

- :class:`RawMainTopicPipeline` -- the seed's fail03: on a failure, re-produce the record to
  its own topic with a ``retry-count`` header (:data:`RETRY_COUNT_HEADER`) and commit
  offset + 1; after ``max_retries`` retries, the dead-letter topic. With ``sleep`` (a
  :class:`~offsetlab.bus.retry.Backoff`) the handler sleeps before re-producing (a delay
  modelled on KafkaJS's retry backoff, spent inside the handler: the partition waits with
  it; KafkaJS itself waits in its runner: E05's client section).
- :class:`RawRetryTopicPipeline` -- E06: a failure goes to ``<topic>-retry`` with provenance
  headers (:mod:`offsetlab.bus.headers`); a separate *retrier* consumer leaves the records
  there (partition paused, still polling) until they are due *and* the dependency answers its
  health probe (:meth:`~offsetlab.lab.experiments.outage_dependency.Dependency.probe`: a real
  request with a timeout, the same the handlers make; it never reads the outage's schedule),
  then processes them (or moves them back to the main topic); the dead-letter topic after the
  last attempt.

Both poll on threads of their own; their consumers assign themselves the partitions and
commit under a group, without group membership (see :class:`_Loop`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.headers import SourceRecord, attempt_of, failure_headers, not_before_of
from offsetlab.bus.retry import Backoff
from offsetlab.lab.experiments.outage_scenario import (
    DeadLetterFn,
    Dependency,
    ProcessFn,
    WorkItem,
)
from offsetlab.lab.raw import create_topic, unique

log = logging.getLogger(__name__)

__all__ = ["RETRY_COUNT_HEADER", "RawMainTopicPipeline", "RawRetryTopicPipeline"]

#: the seed's raw retry counter: an ASCII integer, 0 (absent) for the first delivery
RETRY_COUNT_HEADER = "retry-count"


class _Loop:
    """A raw KafkaConsumer polled on its own thread; ``on_records(consumer, records)``.

    It *assigns* itself every partition of ``topic`` and commits under ``group`` (kafka-python
    reads the group's committed offsets when it starts): no group membership, so no
    rebalance can make a run hand out different records (kafka-python 3.0.12 sometimes
    rebalances a fresh single-member group right after its first join, when the metadata of a
    just-created topic arrives; a commit then fails). Membership is E01's and E07's subject.
    """

    def __init__(self, broker: BrokerHandle, topic: str, group: str, name: str,
                 on_records: Callable[[KafkaConsumer, list[Any]], None],
                 on_idle: Callable[[KafkaConsumer], None] | None = None) -> None:
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._on_records, self._on_idle = on_records, on_idle
        self._consumer = KafkaConsumer(**broker.clients(
            group_id=group, client_id=name, auto_offset_reset="earliest",
            enable_auto_commit=False))
        partitions = sorted(self._consumer.partitions_for_topic(topic) or ())
        if not partitions:
            self._consumer.close()
            raise TimeoutError(f"{name}: topic {topic} has no partitions; create it first")
        self._consumer.assign([TopicPartition(topic, p) for p in partitions])
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._consumer.poll(timeout_ms=50)
                for records in batch.values():
                    self._on_records(self._consumer, records)
                if self._on_idle is not None:
                    self._on_idle(self._consumer)
        except BaseException as exc:  # noqa: BLE001 - surfaced by wait_joined/stop
            self.error = exc
            log.exception("outage consumer loop failed")
        finally:
            self._consumer.close()

    def wait_joined(self, timeout_s: float = 30.0) -> None:
        """Raise the loop's error if it already failed (assignment itself is immediate)."""
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _commit_next(consumer: KafkaConsumer, record: Any) -> None:
    tp = TopicPartition(record.topic, record.partition)
    consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})


class RawMainTopicPipeline:
    """The seed's fail03: re-produce to the same topic with a retry count, commit offset + 1."""

    def __init__(self, broker: BrokerHandle, name: str, *, max_retries: int = 5,
                 sleep: Backoff | None = None, partitions: int = 1) -> None:
        self.name = name
        self.broker = broker
        self.max_retries = max_retries
        self.sleep = sleep
        self.main_topic = create_topic(broker, unique(f"{name}"), partitions)
        self.dead_letter_topic = create_topic(broker, f"{self.main_topic}-dlt", 1)
        self._loop: _Loop | None = None
        self._producer: KafkaProducer | None = None

    def encode(self, item: WorkItem) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        return item.key.encode(), item.to_bytes(), []

    def decode_dead_letter(self, value: bytes) -> int:
        return WorkItem.from_bytes(value).seq

    def handled_topics(self) -> list[str]:
        return [self.main_topic]

    def start(self, process: ProcessFn, on_dead_letter: DeadLetterFn) -> None:
        self._producer = producer = KafkaProducer(**self.broker.clients())

        def on_records(consumer: KafkaConsumer, records: list[Any]) -> None:
            for record in records:
                item = WorkItem.from_bytes(record.value)
                raw = dict(record.headers or []).get(RETRY_COUNT_HEADER)
                retries = int(raw) if raw else 0
                try:
                    process(item, retries + 1)
                except ConnectionError:
                    if self.sleep is not None:  # the seed's retry delay, spent in the handler
                        time.sleep(self.sleep.delay_for(retries + 1))
                    if retries < self.max_retries:
                        producer.send(self.main_topic, key=record.key, value=record.value,
                                      headers=[(RETRY_COUNT_HEADER, str(retries + 1).encode())]
                                      ).get(timeout=30)
                    else:
                        producer.send(self.dead_letter_topic, key=record.key, value=record.value,
                                      headers=[(RETRY_COUNT_HEADER, str(retries).encode())]
                                      ).get(timeout=30)
                        on_dead_letter(item.seq)
                _commit_next(consumer, record)

        self._loop = _Loop(self.broker, self.main_topic, unique(self.name), self.name, on_records)
        self._loop.wait_joined()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
        if self._producer is not None:
            self._producer.close()


class RawRetryTopicPipeline:
    """E06 raw: failures to a retry topic; a retrier that waits for due time and health.

    ``mode="process"``: the retrier handles a due record itself; ``"move-back"``: it produces
    the record (headers and attempt kept) back to the main topic, where the main consumer
    handles it (the seed's "moves messages back to the main topic"): the retried record then
    queues behind the main topic's backlog, but only one consumer runs the handler."""

    def __init__(self, broker: BrokerHandle, name: str, dependency: Dependency, *,
                 max_retries: int = 5, backoff: Backoff | None = None, partitions: int = 1,
                 mode: str = "process") -> None:
        if mode not in ("process", "move-back"):
            raise ConfigError(f"RawRetryTopicPipeline(mode={mode!r}): use 'process' (the retrier "
                              "handles due records) or 'move-back' (it re-produces them to the "
                              "main topic)")
        self.name = name
        self.broker = broker
        self.mode = mode
        self.dependency = dependency
        self.max_retries = max_retries
        self.backoff = backoff or Backoff()
        self.main_topic = create_topic(broker, unique(f"{name}"), partitions)
        self.retry_topic = create_topic(broker, f"{self.main_topic}-retry", 1)
        self.dead_letter_topic = create_topic(broker, f"{self.main_topic}-dlt", 1)
        self.group = unique(name)
        self._loops: list[_Loop] = []
        self._producer: KafkaProducer | None = None

    def encode(self, item: WorkItem) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        return item.key.encode(), item.to_bytes(), []

    def decode_dead_letter(self, value: bytes) -> int:
        return WorkItem.from_bytes(value).seq

    def handled_topics(self) -> list[str]:
        # move-back: the retrier only moves copies; the handler sees them on the main topic
        return [self.main_topic, self.retry_topic] if self.mode == "process" else [self.main_topic]

    def _copy(self, record: Any, *, topic: str, attempt: int, error: BaseException,
              reason: str, not_before: float | None) -> None:
        assert self._producer is not None
        headers = failure_headers(list(record.headers or []), source=SourceRecord.of(record),
                                  group=self.group, attempt=attempt, reason=reason, error=error,
                                  not_before=not_before)
        self._producer.send(topic, key=record.key, value=record.value,
                            headers=list(headers)).get(timeout=30)

    def start(self, process: ProcessFn, on_dead_letter: DeadLetterFn) -> None:
        self._producer = KafkaProducer(**self.broker.clients())
        # fetch the copies' topics' metadata now: a first send() otherwise waits for it
        # before stamping the record, eating into the not-before delay the copy carries
        for topic in (self.retry_topic, self.dead_letter_topic):
            self._producer.partitions_for(topic)

        def attempt_once(record: Any, item: WorkItem, attempt: int) -> None:
            """Process; on a failure make the next retry copy, or the dead letter."""
            try:
                process(item, attempt)
            except ConnectionError as exc:
                if attempt <= self.max_retries:
                    self._copy(record, topic=self.retry_topic, attempt=attempt + 1, error=exc,
                               reason=f"retry: {exc}",
                               not_before=time.time() + self.backoff.delay_for(attempt))
                else:
                    self._copy(record, topic=self.dead_letter_topic, attempt=attempt,
                               error=exc, reason="retries exhausted", not_before=None)
                    on_dead_letter(item.seq)

        def on_main(consumer: KafkaConsumer, records: list[Any]) -> None:
            for record in records:
                # a record moved back by the retrier carries its attempt; an original is 1
                attempt_once(record, WorkItem.from_bytes(record.value),
                             attempt_of(record.headers or []))
                _commit_next(consumer, record)

        waiting: dict[TopicPartition, float] = {}  # paused retry partition -> not-before (epoch)

        def on_retry(consumer: KafkaConsumer, records: list[Any]) -> None:
            for record in records:
                tp = TopicPartition(record.topic, record.partition)
                if tp in waiting:
                    continue  # rest of a batch of a partition we just paused
                due = not_before_of(record.headers or []) or 0.0
                if time.time() < due or not self.dependency.probe():
                    consumer.seek(tp, record.offset)  # leave it there, keep polling
                    consumer.pause(tp)
                    waiting[tp] = due
                    continue
                if self.mode == "move-back":  # the seed: "moves messages back to the main topic"
                    assert self._producer is not None
                    self._producer.send(self.main_topic, key=record.key, value=record.value,
                                        headers=list(record.headers or [])).get(timeout=30)
                else:
                    attempt_once(record, WorkItem.from_bytes(record.value),
                                 attempt_of(record.headers or []))
                _commit_next(consumer, record)

        def retry_idle(consumer: KafkaConsumer) -> None:
            # the retrier's health probe (a real request): resume once the record is due and
            # the dependency answers it
            for tp, due in list(waiting.items()):
                if time.time() >= due and self.dependency.probe():
                    del waiting[tp]
                    consumer.resume(tp)

        self._loops = [
            _Loop(self.broker, self.main_topic, self.group, f"{self.name}-main", on_main),
            _Loop(self.broker, self.retry_topic, f"{self.group}-retrier", f"{self.name}-retrier",
                  on_retry, retry_idle),
        ]
        for loop in self._loops:
            loop.wait_joined()

    def stop(self) -> None:
        for loop in self._loops:
            loop.stop()
        if self._producer is not None:
            self._producer.close()
