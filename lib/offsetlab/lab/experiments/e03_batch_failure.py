"""E03: one failure inside a batch (the seed's ``fail01``).

The seed produced 5 keyed messages, failed message 3 in an ``eachBatch`` handler and asked:
can the other messages be completed and only message 3 left for later? No: what a consumer
group stores per partition is one committed offset, *the position to resume from*, not a set
of done messages. Committing for message 4 or 5 says "resume after 5", so message 3 is
skipped for good. What you can do is stop the batch at the failure and seek back: 3, 4 and 5
are delivered again. Spreading keys over partitions confines that stall to the failed
message's partition.

Scenarios (each on its own topic and group, every message numbered 1..n in produce order;
message ``fail_message`` fails on its first ``fail_times`` attempts, ``None`` = always):

- :func:`run_raw_commit_past` -- raw kafka-python, the seed's attempt: process every message
  of the batch, commit ``offset + 1`` after each success, log the failure and carry on. Then
  a restart (a new consumer in the same group) reads from the committed position.
- :func:`run_raw_seek_back` -- raw kafka-python: on the failure, seek the partition back to
  the failed offset and stop processing that partition's batch; the next poll redelivers.
- :func:`run_runner` -- the adapter's :class:`~offsetlab.bus.runner.ConsumerRunner` with a
  batch handler. ``stop_at_failure=False`` is the seed's handler (settle everything that
  worked, carry on past the failure): the runner still commits only up to the last
  *contiguous* settled offset and seeks back to the gap itself. ``stop_at_failure=True``
  seeks back at the failure and skips the rest of that partition (``ctx.skipped``).
  With ``partitions=3`` and keys spread over them, only the failed message's partition stalls.

Every scenario returns a :class:`ScenarioResult`: the produced messages, one
:class:`Attempt` per batch (delivered, processed, failed, committed position after it), the
committed offsets read back from the broker at the end, and a
:class:`~offsetlab.lab.timeline.Timeline`. The shared pieces (:class:`Flaky`,
:func:`produce_numbered`, :func:`committed_positions`, :func:`raw_consumer`,
:func:`consume_until`) are reused by E04.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata, TopicPartition

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.config import CrashPolicy, RunnerConfig
from offsetlab.bus.lifecycle import Commit, LifecycleEvent
from offsetlab.bus.runner import BatchContext, ConsumerRunner
from offsetlab.lab.raw import create_topic, unique, warmed_consumer
from offsetlab.lab.timeline import (
    RecordingProducer,
    Timeline,
    TimelineRebalanceListener,
    record_consumed,
    runner_listener,
)

if TYPE_CHECKING:  # the scenarios need neither; only the table and plot helpers do
    import pandas as pd
    from matplotlib.figure import Figure

#: Keys of message 1..5 with this prefix land on partitions 0, 2, 1, 1, 0 of a 3-partition
#: topic (kafka-python's murmur2 partitioner, as the Java client): message 3 shares its
#: partition with message 4 only. The partitions are read from the produce acknowledgements.
KEY_PREFIX = "customer-"

#: Group timings that work on Kafka's defaults (group.min.session.timeout.ms = 6000) and on
#: Tansu, whose first join waits about half the session timeout.
GROUP_SETTINGS: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


class ProcessingFailed(Exception):
    """The handler could not process a message (a stand-in for a dependency that is down)."""


@dataclass(frozen=True)
class Message:
    """One produced message: its number (1-based, produce order) and where the broker put it."""

    number: int
    key: str
    partition: int
    offset: int


@dataclass
class Flaky:
    """The message handler's work: message ``fail_number`` fails on its first ``fail_times``
    attempts (``None``: always); every other attempt succeeds. Records attempts and successes."""

    fail_number: int
    fail_times: int | None = 1
    attempts: Counter[int] = field(default_factory=Counter)
    processed: list[int] = field(default_factory=list)

    def __call__(self, number: int) -> None:
        self.attempts[number] += 1
        if number == self.fail_number and (self.fail_times is None
                                           or self.attempts[number] <= self.fail_times):
            raise ProcessingFailed(f"message {number} failed (attempt {self.attempts[number]})")
        self.processed.append(number)


@dataclass(frozen=True)
class Attempt:
    """One batch handed to a handler: what was delivered, processed and failed, and the
    committed position of each partition after it (``{partition: next offset to read}``)."""

    attempt: int
    who: str
    delivered: tuple[int, ...]
    processed: tuple[int, ...]
    failed: tuple[int, ...]
    committed: dict[int, int]


@dataclass
class ScenarioResult:
    """What one scenario did, and what the broker holds at its end."""

    name: str
    topic: str
    group: str
    messages: list[Message]
    flaky: Flaky
    attempts: list[Attempt]
    committed: dict[int, int]        # read back from the broker at the end
    end_offsets: dict[int, int]
    timeline: Timeline
    restart_delivered: tuple[int, ...] | None = None  # what a new consumer of the group got

    def by_position(self) -> dict[tuple[int, int], int]:
        return {(m.partition, m.offset): m.number for m in self.messages}

    def delivery_counts(self) -> dict[int, int]:
        counts = Counter(n for a in self.attempts for n in a.delivered)
        return {m.number: counts[m.number] for m in self.messages}

    def processed_counts(self) -> dict[int, int]:
        counts = Counter(self.flaky.processed)
        return {m.number: counts[m.number] for m in self.messages}

    def lost(self) -> list[int]:
        """Never processed, yet behind its partition's committed position: the group will
        not deliver it again."""
        done = self.processed_counts()
        return sorted(m.number for m in self.messages
                      if done[m.number] == 0 and m.offset < self.committed.get(m.partition, 0))

    def duplicated(self) -> list[int]:
        """Processed more than once."""
        return sorted(n for n, c in self.processed_counts().items() if c > 1)

    def stalled_partitions(self) -> list[int]:
        """Partitions whose committed position is short of their end."""
        return sorted(p for p, end in self.end_offsets.items() if self.committed.get(p, 0) < end)

    def stuck_messages(self) -> list[int]:
        """Messages at or after the committed position of their partition."""
        return sorted(m.number for m in self.messages if m.offset >= self.committed.get(m.partition, 0))

    def delivered_after_first_failure(self) -> list[int]:
        """The messages of the attempt right after the first one with a failure."""
        for i, a in enumerate(self.attempts):
            if a.failed and i + 1 < len(self.attempts):
                return list(self.attempts[i + 1].delivered)
        return []

    def next_message(self, committed: dict[int, int]) -> str:
        """A committed position in words: per partition, the message it resumes at."""
        at = self.by_position()
        parts = []
        for p in sorted(self.end_offsets):
            pos = committed.get(p)
            resume = 0 if pos is None else pos  # nothing committed: auto_offset_reset=earliest
            label = f"msg {at[(p, resume)]}" if (p, resume) in at else "end"
            parts.append(f"p{p}: {'none' if pos is None else pos} -> {label}")
        return ", ".join(parts)

    def attempts_rows(self) -> list[dict[str, Any]]:
        """One row per attempt (for a DataFrame)."""
        return [{"scenario": self.name, "attempt": a.attempt, "who": a.who,
                 "delivered": list(a.delivered), "processed": list(a.processed),
                 "failed": list(a.failed), "committed after": self.next_message(a.committed)}
                for a in self.attempts]


# -- shared steps (E04 uses them too) -------------------------------------------------------
def produce_numbered(broker: BrokerHandle, topic: str, n: int, timeline: Timeline,
                     key_prefix: str = KEY_PREFIX) -> list[Message]:
    """Produce messages 1..n (key ``<key_prefix>N``, value ``message N``), one at a time."""
    producer = RecordingProducer(KafkaProducer(**broker.clients()), timeline)
    out = []
    try:
        for number in range(1, n + 1):
            key = f"{key_prefix}{number}"
            md = producer.send(topic, key=key.encode(), value=f"message {number}".encode()).get(timeout=30)
            out.append(Message(number, key, md.partition, md.offset))
    finally:
        producer.close()
    return out


def committed_positions(broker: BrokerHandle, group: str, topic: str) -> dict[int, int]:
    """The group's committed offsets for ``topic``, read back from the broker."""
    admin = KafkaAdminClient(**broker.clients())
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})  # kafka-python 3.x name
    finally:
        admin.close()
    return {tp.partition: om.offset for tp, om in offsets.items()
            if tp.topic == topic and om.offset >= 0}


def end_offsets(broker: BrokerHandle, topic: str, partitions: int) -> dict[int, int]:
    consumer = KafkaConsumer(**broker.clients())
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        consumer.close()
    return {tp.partition: off for tp, off in ends.items()}


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
    deadline = time.monotonic() + timeout_s
    while True:
        batch = consumer.poll(timeout_ms=100)
        if batch:
            yield batch
        if done():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"consumer did not finish within {timeout_s} s "
                               f"(assignment {sorted(consumer.assignment())})")


def _committed_now(consumer: KafkaConsumer) -> dict[int, int]:
    out = {}
    for tp in sorted(consumer.assignment()):
        off = consumer.committed(tp)
        if off is not None:
            out[tp.partition] = off
    return out


# -- raw kafka-python -----------------------------------------------------------------------
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
                                    tuple(log.failed), _committed_now(consumer)))
            if keep_going is False:
                break
    finally:
        consumer.close(autocommit=False)
    return attempts


def new_scenario(broker: BrokerHandle, name: str, *, n_messages: int, fail_message: int,
                 fail_times: int | None, partitions: int, prefix: str = "e03") -> ScenarioResult:
    """A fresh topic with messages 1..n produced, a fresh group name, an empty result."""
    topic = create_topic(broker, unique(f"{prefix}-{name}"), partitions)
    timeline = Timeline()
    messages = produce_numbered(broker, topic, n_messages, timeline)
    return ScenarioResult(name=name, topic=topic, group=unique(f"{prefix}-{name}"), messages=messages,
                          flaky=Flaky(fail_message, fail_times), attempts=[], committed={},
                          end_offsets=end_offsets(broker, topic, partitions), timeline=timeline)


def restart_and_finish(broker: BrokerHandle, result: ScenarioResult, handler: RawBatchHandler,
                       timeout_s: float) -> ScenarioResult:
    """A new consumer of the group (the restart) reads from the committed position to the
    end with ``handler``; then the committed offsets are read back from the broker."""
    before = len(result.attempts)
    result.attempts += run_raw_consumer(broker, result, "consumer (restarted)", handler,
                                        timeout_s=timeout_s)
    result.restart_delivered = tuple(n for a in result.attempts[before:] for n in a.delivered)
    result.committed = committed_positions(broker, result.group, result.topic)
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


# -- the adapter's consumer runner ----------------------------------------------------------
def runner_config(broker: BrokerHandle, topic: str, group: str, name: str,
                  crash_policy: CrashPolicy | None = None) -> RunnerConfig:
    return RunnerConfig(bootstrap_servers=broker.bootstrap_servers, group_id=group, topics=(topic,),
                        name=name, crash_policy=crash_policy or CrashPolicy(restart=False),
                        consumer_settings={"auto_offset_reset": "earliest", **GROUP_SETTINGS,
                                           **broker.client_config})


def run_runner(broker: BrokerHandle, *, n_messages: int = 5, fail_message: int = 3,
               fail_times: int | None = 1, partitions: int = 1, stop_at_failure: bool = True,
               retry_delay_s: float = 0.1, min_failures: int = 3,
               timeout_s: float = 30) -> ScenarioResult:
    """The adapter's runner with a batch handler (see the module docstring).

    Runs until every message that can succeed was processed and committed, and (when the
    failure is permanent, ``fail_times=None``) the failed message was tried ``min_failures``
    times; ``retry_delay_s`` is slept after a failure (a retry back-off, so a permanent
    failure does not spin)."""
    name = ("runner-stop-at-failure" if stop_at_failure else "runner-settle-past") + \
        (f"-{partitions}p" if partitions > 1 else "")
    result = new_scenario(broker, name, n_messages=n_messages, fail_message=fail_message,
                       fail_times=fail_times, partitions=partitions)
    tl, who, numbers = result.timeline, "runner", result.by_position()
    committed: dict[int, int] = {}
    batches: list[tuple[list[int], list[int], list[int]]] = []
    after: list[dict[int, int]] = []

    def on_event(event: LifecycleEvent) -> None:
        if isinstance(event, Commit):
            committed.update({tp.partition: off for tp, off in event.offsets.items()})
            if after:
                after[-1] = dict(committed)

    def handler(records: list[ConsumerRecord], ctx: BatchContext) -> None:
        delivered, processed, failed = [numbers[(r.partition, r.offset)] for r in records], [], []
        batches.append((delivered, processed, failed))
        after.append(dict(committed))
        for r in records:
            record_consumed(tl, who, r)
        for r in records:
            n = numbers[(r.partition, r.offset)]
            if ctx.skipped(r):
                continue
            try:
                result.flaky(n)
            except ProcessingFailed as exc:
                failed.append(n)
                tl.record(who, "failed", topic=r.topic, partition=r.partition, offset=r.offset,
                          key=r.key, detail={"error": str(exc)})
                time.sleep(retry_delay_s)
                if stop_at_failure:
                    ctx.seek(TopicPartition(r.topic, r.partition), r.offset)
                continue
            processed.append(n)
            tl.record(who, "processed", topic=r.topic, partition=r.partition, offset=r.offset, key=r.key)
            ctx.settle(r)

    fail_at = next(m for m in result.messages if m.number == fail_message)
    if fail_times is None:  # permanent: the failed message (and, stopping there, what follows it
        # on its partition) never completes; its partition's position stays put
        blocked = {m.number for m in result.messages if m.partition == fail_at.partition
                   and (m.offset >= fail_at.offset if stop_at_failure else m.number == fail_message)}
        must_commit = [m for m in result.messages if m.partition != fail_at.partition]
    else:
        blocked, must_commit = set(), list(result.messages)

    def finished() -> bool:
        done = set(result.flaky.processed) >= {m.number for m in result.messages} - blocked
        tried = fail_times is not None or result.flaky.attempts[fail_message] >= min_failures
        moved = all(committed.get(m.partition, -1) > m.offset for m in must_commit)
        return done and tried and moved

    runner = ConsumerRunner(runner_config(broker, result.topic, result.group, who),
                            batch_handler=handler, listeners=[runner_listener(tl, who), on_event],
                            consumer_factory=warmed_consumer((result.topic,)))
    try:
        runner.run(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while not finished():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: not finished within {timeout_s} s "
                                   f"(processed {result.flaky.processed}, committed {committed})")
            time.sleep(0.05)
    finally:
        runner.stop()
    result.attempts = [Attempt(i + 1, who, tuple(d), tuple(p), tuple(f), c)
                       for i, ((d, p, f), c) in enumerate(zip(batches, after, strict=True))]
    result.committed = committed_positions(broker, result.group, result.topic)
    return result


# -- tables and pictures (E04 uses them too) ------------------------------------------------
def attempts_frame(results: list[ScenarioResult]) -> pd.DataFrame:
    """Every attempt of every scenario: delivered, processed, failed, committed after."""
    import pandas as pd

    return pd.DataFrame([row for r in results for row in r.attempts_rows()])


def deliveries_frame(results: list[ScenarioResult]) -> pd.DataFrame:
    """Per scenario and message: times delivered (handed to the handler) and processed."""
    import pandas as pd

    rows = []
    for r in results:
        delivered, processed = r.delivery_counts(), r.processed_counts()
        for m in r.messages:
            rows.append({"scenario": r.name, "message": m.number, "partition": m.partition,
                         "delivered": delivered[m.number], "processed": processed[m.number],
                         "lost": m.number in r.lost()})
    return pd.DataFrame(rows)


def plot_timelines(results: list[ScenarioResult], *, width: float = 10.0) -> Figure:
    """One timeline (:func:`~offsetlab.lab.plots.plot_timeline`) per scenario, stacked."""
    from matplotlib.figure import Figure

    from offsetlab.lab.plots import plot_timeline

    heights = [max(1.6, 0.55 * r.timeline.to_frame().who.nunique() + 1.0) for r in results]
    fig = Figure(figsize=(width, sum(heights)), layout="constrained")
    axes = fig.subplots(len(results), 1, height_ratios=heights, squeeze=False)[:, 0]
    for ax, r in zip(axes, results, strict=True):
        plot_timeline(r.timeline.to_frame(), ax=ax, title=r.name, annotate_other=False)
    return fig


_CELL_STYLE = {"processed": ("o", "#31a354"), "failed": ("X", "#de2d26"),
               "delivered, not processed": ("o", "#d9d9d9")}


def plot_attempts(results: list[ScenarioResult], *, width: float = 10.0) -> Figure:
    """Per scenario, a grid of attempts (rows) by message (columns): processed (green),
    failed (red cross), delivered but not processed (grey); the committed position after each
    attempt written on the right, messages lost at the end marked in the column header."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    heights = [0.45 * max(1, len(r.attempts)) + 0.9 for r in results]
    fig = Figure(figsize=(width, sum(heights)), layout="constrained")
    axes = fig.subplots(len(results), 1, height_ratios=heights, squeeze=False)[:, 0]
    for ax, r in zip(axes, results, strict=True):
        lost = set(r.lost())
        for y, a in enumerate(r.attempts):
            for n in a.delivered:
                state = ("failed" if n in a.failed else "processed" if n in a.processed
                         else "delivered, not processed")
                marker, color = _CELL_STYLE[state]
                ax.scatter([n], [y], marker=marker, color=color, s=110, edgecolors="black",
                           linewidths=0.4, zorder=3)
            ax.annotate(f"committed {r.next_message(a.committed)}", (1.0, y),
                        xycoords=("axes fraction", "data"), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=8)
        numbers = [m.number for m in r.messages]
        ax.set_xticks(numbers, [f"{m.number}\n(p{m.partition})" + ("\nLOST" if m.number in lost else "")
                                for m in r.messages], fontsize=8)
        for label, m in zip(ax.get_xticklabels(), r.messages, strict=True):
            if m.number in lost:
                label.set_color("#de2d26")
        ax.set_yticks(range(len(r.attempts)), [f"{a.attempt}: {a.who}" for a in r.attempts], fontsize=8)
        ax.set_xlim(min(numbers) - 0.6, max(numbers) + 0.6)
        ax.set_ylim(len(r.attempts) - 0.5, -0.5)
        ax.grid(alpha=0.3)
        ax.set_title(r.name, fontsize=10, loc="left")
    axes[0].legend(handles=[Line2D([], [], marker=m, color=c, linestyle="", markeredgecolor="black", label=k)
                            for k, (m, c) in _CELL_STYLE.items()],
                   loc="lower left", bbox_to_anchor=(0.0, 1.15), ncol=3, fontsize=8, frameon=False)
    axes[-1].set_xlabel("message (partition)")
    return fig
