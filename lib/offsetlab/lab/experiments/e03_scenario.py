"""E03's scenario as data: the numbered messages, the failing handler's work, what each batch
did, and a scenario's result (what the broker holds at its end).

Every scenario runs on its own topic and group with messages numbered 1..n in produce order
(:func:`produce_numbered`, :class:`Message`); message ``fail_number`` of :class:`Flaky` fails
on its first ``fail_times`` attempts (``None``: always). A :class:`ScenarioResult` holds one
:class:`Attempt` per batch (delivered, processed, failed, committed position after it), the
committed and end offsets read back from the broker, and a
:class:`~offsetlab.lab.timeline.Timeline`; its methods answer what was lost, duplicated or
stuck. :func:`new_scenario` makes a fresh topic, produces the messages and returns an empty
result. E04 uses all of it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.raw import create_topic, end_offsets, unique
from offsetlab.lab.timeline import RecordingProducer, Timeline

__all__ = ["KEY_PREFIX", "GROUP_SETTINGS", "ProcessingFailed", "Message", "Flaky", "Attempt",
           "ScenarioResult", "produce_numbered", "new_scenario"]

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
    #: ``time.monotonic()`` of each attempt, per message
    attempt_times: dict[int, list[float]] = field(default_factory=dict)

    def __call__(self, number: int) -> None:
        self.attempts[number] += 1
        self.attempt_times.setdefault(number, []).append(time.monotonic())
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
    #: ``time.monotonic()`` when every message outside the failed one's partition was
    #: processed and committed (E03's spread scenario), and how long the run went on after
    others_done_at: float | None = None
    window_s: float | None = None

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



def new_scenario(broker: BrokerHandle, name: str, *, n_messages: int, fail_message: int,
                 fail_times: int | None, partitions: int, prefix: str = "e03") -> ScenarioResult:
    """A fresh topic with messages 1..n produced, a fresh group name, an empty result."""
    topic = create_topic(broker, unique(f"{prefix}-{name}"), partitions)
    timeline = Timeline()
    messages = produce_numbered(broker, topic, n_messages, timeline)
    return ScenarioResult(name=name, topic=topic, group=unique(f"{prefix}-{name}"), messages=messages,
                          flaky=Flaky(fail_message, fail_times), attempts=[], committed={},
                          end_offsets=end_offsets(broker, topic), timeline=timeline)
