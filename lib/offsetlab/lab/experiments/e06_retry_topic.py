"""E06: a retry topic, and a retrier that waits for the dependency.

The seed's second option: "If a message fails and should be retried, write it to a retry
topic; process the retry topic separately ... The retrier monitors dependencies and, when
they're up, moves messages back." Here, in raw kafka-python first
(:class:`~offsetlab.lab.experiments.outage_raw.RawRetryTopicPipeline`):

- the main consumer, on a retriable failure, produces the record to ``<topic>-retry`` with
  provenance headers (:func:`offsetlab.bus.headers.failure_headers`: original topic,
  partition, offset, timestamp, consumer group, exception class and message, attempt,
  not-before time, reason) and commits offset + 1 -- the main partition goes on;
- a separate *retrier* consumer reads the retry topic; a record that is not due yet, or whose
  dependency fails its health probe (a real request with a timeout), stays where it is (seek back, pause the partition, keep
  polling); once due and healthy it is processed; a failure makes the next copy (attempt + 1,
  later not-before); after ``max_retries`` retries the record goes to ``<topic>-dlt``.

:func:`run_retry_topic` runs that on a few messages (one of them failing) and reads the retry
and dead-letter topics back from the broker, decoding every copy's provenance
(:class:`CopyRow`), plus the committed positions of both consumers. The adapter's answer is
``KafkaBus`` with ``RetryTopicRetry`` (:func:`offsetlab.lab.experiments.e05_bus.run_fail03_bus`),
and the outage comparison with E05 is :mod:`offsetlab.lab.experiments.outage`.
The notebook's findings are computed by the finders of
:mod:`~offsetlab.lab.experiments.e06_findings`, :mod:`~offsetlab.lab.experiments.e05_findings`
and :mod:`~offsetlab.lab.experiments.outage_findings`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.headers import parse_provenance
from offsetlab.bus.retry import Backoff
from offsetlab.lab.experiments.outage_raw import RawRetryTopicPipeline
from offsetlab.lab.experiments.outage_run import OutageRun, read_deliveries
from offsetlab.lab.experiments.outage_scenario import Dependency, DependencyDown, WorkItem
from offsetlab.lab.raw import committed_offsets, end_offsets, read_topic

__all__ = ["CopyRow", "RetryTopicRun", "run_retry_topic", "failed_during_outage"]


@dataclass(frozen=True, kw_only=True)
class CopyRow:
    """One record read back from the retry or dead-letter topic, its headers decoded."""

    topic: str  # "retry" | "dlt"
    offset: int
    seq: int
    attempt: int
    original_topic_is_main: bool
    original_partition: int | None
    original_offset: int | None
    exception: str | None
    #: not-before minus the copy's own timestamp, ms (None: no not-before, dead letters)
    not_before_after_ms: int | None
    reason: str


@dataclass
class RetryTopicRun:
    topic: str
    produced: list[WorkItem]
    #: (seq, attempt, "processed" | "failed") in handler call order
    calls: list[tuple[int, int, str]]
    copies: list[CopyRow]
    #: offsets of the first delivery of each seq on the main topic
    main_offsets: dict[int, int]
    committed: dict[str, int | None]
    end_offsets: dict[str, int]
    finished: bool
    #: read back from the main and retry topics: seq -> sorted attempt numbers of its records
    deliveries_read: dict[int, list[int]] = field(default_factory=dict)

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([vars(c) for c in self.copies])

    def attempts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for seq, _, _ in self.calls:
            counts[seq] = counts.get(seq, 0) + 1
        return dict(sorted(counts.items()))


def run_retry_topic(broker: BrokerHandle, *, n_messages: int = 5,
                    failing: Mapping[int, int | None] | None = None, max_retries: int = 5,
                    backoff: Backoff | None = None, timeout_s: float = 30.0) -> RetryTopicRun:
    """Produce ``n_messages`` work items; the handler fails the first ``failing[seq]`` calls
    of an item (``None``: always). Wait until each is processed or dead-lettered, stop, read
    everything back."""
    failing = dict({2: None} if failing is None else failing)
    backoff = backoff or Backoff(initial_s=0.1, multiplier=1.0, max_s=0.1)
    dependency = Dependency()  # healthy throughout: the failures here are the handler's
    pipeline = RawRetryTopicPipeline(broker, "e06-raw", dependency, max_retries=max_retries,
                                     backoff=backoff)
    calls: list[tuple[int, int, str]] = []
    count: dict[int, int] = {}
    done: set[int] = set()
    lock = threading.Lock()

    def process(item: WorkItem, attempt: int) -> None:
        with lock:
            count[item.seq] = count.get(item.seq, 0) + 1
            n = count[item.seq]
        fails = failing.get(item.seq, 0)
        if fails is None or n <= fails:
            calls.append((item.seq, attempt, "failed"))
            raise DependencyDown(f"dependency down for message {item.seq} (call {n})")
        calls.append((item.seq, attempt, "processed"))
        with lock:
            done.add(item.seq)

    def on_dead_letter(seq: int) -> None:
        with lock:
            done.add(seq)

    items = [WorkItem(seq=i, key=f"key-{i}", needs_dependency=False) for i in range(n_messages)]
    main_offsets: dict[int, int] = {}
    finished = False
    producer = KafkaProducer(**broker.clients(linger_ms=0))
    try:
        pipeline.start(process, on_dead_letter)
        for item in items:
            key, value, headers = pipeline.encode(item)
            md = producer.send(pipeline.main_topic, key=key, value=value, headers=headers).get(timeout=30)
            main_offsets[item.seq] = md.offset
        deadline = Deadline(timeout_s)
        while not deadline.expired():
            with lock:
                if len(done) == n_messages:
                    finished = True
                    break
            time.sleep(0.05)
    finally:
        producer.close()
        pipeline.stop()
        dependency.close()
    copies = []
    for kind, topic in (("retry", pipeline.retry_topic), ("dlt", pipeline.dead_letter_topic)):
        for record in read_topic(broker, topic):
            p = parse_provenance(record.headers or [])
            copies.append(CopyRow(
                topic=kind, offset=record.offset, seq=WorkItem.from_bytes(record.value).seq,
                attempt=p.attempt, original_topic_is_main=p.original_topic == pipeline.main_topic,
                original_partition=p.original_partition, original_offset=p.original_offset,
                exception=(p.exception_fqcn or "").rsplit(".", 1)[-1] or None,
                not_before_after_ms=None if p.not_before_ms is None else p.not_before_ms - record.timestamp,
                reason=(p.reason or "").split(":")[0]))
    topics = {"main": (pipeline.main_topic, pipeline.group),
              "retry": (pipeline.retry_topic, f"{pipeline.group}-retrier")}
    committed = {name: committed_offsets(broker, group, topic).get(0)
                 for name, (topic, group) in topics.items()}
    ends = {name: end_offsets(broker, topic)[0] for name, (topic, _) in topics.items()}
    return RetryTopicRun(topic=pipeline.main_topic, produced=items, calls=calls, copies=copies,
                         main_offsets=main_offsets, committed=committed, end_offsets=ends,
                         finished=finished, deliveries_read=read_deliveries(broker, pipeline))


def failed_during_outage(run: OutageRun, lane: str, *, retries_only: bool = True) -> int:
    """How many handler calls of ``lane`` failed while the dependency was down (with
    ``retries_only``: calls on attempt 2 or later, i.e. retries spent on the outage)."""
    frame = run.timeline.to_frame()
    rows = frame[(frame.who == lane) & (frame.what == "failed")]
    lo, hi = run.outage_t
    return sum(1 for t, d in zip(rows.t, rows.detail, strict=True)
               if lo <= t < hi and (not retries_only or d["attempt"] >= 2))

