"""E03 in raw kafka-python: a consumer of the scenario's group, handling batches with a
batch handler until its fetch position reaches the end of every partition.

- :func:`run_raw_commit_past` -- the seed's attempt: process every message of the batch,
  commit ``offset + 1`` after each success, log the failure and carry on
  (:func:`commit_past_failure`). Then a restart (a new consumer in the same group) reads from
  the committed position.
- :func:`run_raw_seek_back` -- on the failure, seek the partition back to the failed offset
  and stop processing that partition's batch (:func:`seek_back_at_failure`); the next poll
  redelivers.

:func:`run_raw_consumer` (one consumer, one :class:`BatchLog` per batch, the committed
offsets read back after each) and :func:`restart_and_finish` are E04's too, with its own
handlers (a :data:`RawBatchHandler`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata, TopicPartition

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.transports.kafka_python.compat import unstick_join
from offsetlab.lab.experiments.e03_scenario import (
    GROUP_SETTINGS,
    Attempt,
    Flaky,
    ProcessingFailed,
    ScenarioResult,
    new_scenario,
)
from offsetlab.lab.raw import committed_offsets, warmed_consumer
from offsetlab.lab.timeline import Timeline, TimelineRebalanceListener, record_consumed

__all__ = ["raw_consumer", "at_end", "consume_until", "RawBatchHandler", "BatchLog",
           "commit_past_failure", "seek_back_at_failure", "run_raw_consumer",
           "restart_and_finish", "run_raw_commit_past", "run_raw_seek_back", "unstick_when_stuck"]


def raw_consumer(broker: BrokerHandle, topic: str, group: str, who: str,
                 timeline: Timeline) -> KafkaConsumer:
    """A raw kafka-python consumer of ``group``: auto-commit off, from the earliest offset,
    the topic's metadata fetched before it subscribes (see :func:`warmed_consumer`)."""
    consumer = warmed_consumer((topic,))(**broker.clients(group_id=group, client_id=who,
                                                          enable_auto_commit=False,
                                                          auto_offset_reset="earliest",
                                                          **GROUP_SETTINGS))
    consumer.subscribe([topic], listener=TimelineRebalanceListener(timeline, who))
    return consumer


def at_end(consumer: KafkaConsumer, ends: dict[int, int]) -> bool:
    """Assigned, and the fetch position of every assigned partition is at its end."""
    assigned = consumer.assignment()
    return bool(assigned) and all(consumer.position(tp) >= ends[tp.partition] for tp in assigned)


def consume_until(consumer: KafkaConsumer, done: Callable[[], bool], *,
                  timeout_s: float) -> Iterator[dict[TopicPartition, list[ConsumerRecord]]]:
    """Poll, yielding every non-empty batch, until ``done()`` after a poll (or raise
    TimeoutError after ``timeout_s``)."""
    deadline = Deadline(timeout_s)
    while True:
        batch = consumer.poll(timeout_ms=100)
        if batch:
            yield batch
        unstick_when_stuck(consumer)
        if done():
            return
        if deadline.expired():
            raise TimeoutError(f"consumer did not finish within {timeout_s} s "
                               f"(assignment {sorted(consumer.assignment())})")


def unstick_when_stuck(consumer: KafkaConsumer) -> bool:
    """kafka-python 3.0.12 can abandon a rejoin and leave the member holding nothing it is
    fetched (:func:`~offsetlab.bus.transports.kafka_python.compat.unstick_join`); called
    after every ``poll()``, as the bus's transport does, it asks for a fresh join when the
    client finished a join nobody consumed. True when it did."""
    return unstick_join(consumer)


#: ``handler(consumer, records, log)``; returning ``False`` stops the consumer after this batch
RawBatchHandler = Callable[[KafkaConsumer, list[ConsumerRecord], "BatchLog"], "bool | None"]


@dataclass
class BatchLog:
    """What one raw consumer's batch handler did, on the scenario's timeline."""

    timeline: Timeline
    who: str
    flaky: Flaky
    numbers: dict[tuple[int, int], int]
    processed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    def number(self, r: ConsumerRecord) -> int:
        return self.numbers[(r.partition, r.offset)]

    def process(self, r: ConsumerRecord) -> bool:
        """Run the handler's work on ``r``; True if it succeeded."""
        n = self.number(r)
        try:
            self.flaky(n)
        except ProcessingFailed as exc:
            self.failed.append(n)
            self.timeline.record(self.who, "failed", topic=r.topic, partition=r.partition,
                                 offset=r.offset, key=r.key, detail={"error": str(exc)})
            return False
        self.processed.append(n)
        self.timeline.record(self.who, "processed", topic=r.topic, partition=r.partition,
                             offset=r.offset, key=r.key)
        return True

    def commit(self, consumer: KafkaConsumer, r: ConsumerRecord, position: int) -> None:
        """Commit ``position`` for the record's partition (the seed's manual commit)."""
        tp = TopicPartition(r.topic, r.partition)
        consumer.commit({tp: OffsetAndMetadata(position, "", -1)})
        self.timeline.record(self.who, "commit", topic=r.topic, partition=r.partition,
                             offset=position)


def commit_past_failure(consumer: KafkaConsumer, records: list[ConsumerRecord], log: BatchLog) -> None:
    """The seed's batch handler: commit ``offset + 1`` after each success, skip failures."""
    for r in records:
        if log.process(r):
            log.commit(consumer, r, r.offset + 1)


def seek_back_at_failure(consumer: KafkaConsumer, records: list[ConsumerRecord], log: BatchLog) -> None:
    """Commit ``offset + 1`` after each success; at a failure seek the partition back to it
    and leave the rest of that partition's batch for the redelivery."""
    for r in records:
        if log.process(r):
            log.commit(consumer, r, r.offset + 1)
        else:
            consumer.seek(TopicPartition(r.topic, r.partition), r.offset)
            log.timeline.record(log.who, "seek", topic=r.topic, partition=r.partition, offset=r.offset)
            return


def run_raw_consumer(broker: BrokerHandle, result: ScenarioResult, who: str,
                     handler: RawBatchHandler, *, timeout_s: float = 30) -> list[Attempt]:
    """One raw consumer of the scenario's group, handling batches until its fetch position
    reaches the end of every partition (or the handler returns False); then closed (it
    leaves the group, committing nothing more)."""
    numbers = result.by_position()
    consumer = raw_consumer(broker, result.topic, result.group, who, result.timeline)
    attempts: list[Attempt] = []
    try:
        for batch in consume_until(consumer, lambda: at_end(consumer, result.end_offsets),
                                   timeout_s=timeout_s):
            records = [r for tp in sorted(batch) for r in batch[tp]]
            for r in records:
                record_consumed(result.timeline, who, r)
            log = BatchLog(result.timeline, who, result.flaky, numbers)
            keep_going = handler(consumer, records, log)
            attempts.append(Attempt(len(result.attempts) + len(attempts) + 1, who,
                                    tuple(log.number(r) for r in records), tuple(log.processed),
                                    tuple(log.failed),
                                    committed_offsets(broker, result.group, result.topic)))
            if keep_going is False:
                break
    finally:
        consumer.close(autocommit=False)
    return attempts



def restart_and_finish(broker: BrokerHandle, result: ScenarioResult, handler: RawBatchHandler,
                       timeout_s: float) -> ScenarioResult:
    """A new consumer of the group (the restart) reads from the committed position to the
    end with ``handler``; then the committed offsets are read back from the broker."""
    before = len(result.attempts)
    result.attempts += run_raw_consumer(broker, result, "consumer (restarted)", handler,
                                        timeout_s=timeout_s)
    result.restart_delivered = tuple(n for a in result.attempts[before:] for n in a.delivered)
    result.committed = committed_offsets(broker, result.group, result.topic)
    return result


def run_raw_commit_past(broker: BrokerHandle, *, n_messages: int = 5, fail_message: int = 3,
                        timeout_s: float = 30) -> ScenarioResult:
    """Raw kafka-python, the seed's attempt (one partition): commit past the failed message,
    then restart a consumer of the group and see what it gets."""
    result = new_scenario(broker, "raw-commit-past", n_messages=n_messages,
                       fail_message=fail_message, fail_times=1, partitions=1)
    result.attempts += run_raw_consumer(broker, result, "consumer", commit_past_failure,
                                        timeout_s=timeout_s)
    return restart_and_finish(broker, result, commit_past_failure, timeout_s)


def run_raw_seek_back(broker: BrokerHandle, *, n_messages: int = 5, fail_message: int = 3,
                      timeout_s: float = 30) -> ScenarioResult:
    """Raw kafka-python (one partition): stop at the failure and seek back; the next poll
    redelivers from the failed message on. Then a restart shows nothing is left."""
    result = new_scenario(broker, "raw-seek-back", n_messages=n_messages,
                       fail_message=fail_message, fail_times=1, partitions=1)
    result.attempts += run_raw_consumer(broker, result, "consumer", seek_back_at_failure,
                                        timeout_s=timeout_s)
    return restart_and_finish(broker, result, seek_back_at_failure, timeout_s)
