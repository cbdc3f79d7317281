"""A hand-written fake of the slice of ``kafka.KafkaConsumer`` the runner uses.

:class:`FakeCluster` holds partition logs and committed offsets (shared by every consumer it
builds, so a restarted runner resumes from what was committed, like a broker);
:class:`FakeConsumer` records every call and behaves like a one-member group: it "joins" on
its ``assign_after_polls``-th poll (calling the rebalance listener as kafka-python does,
revoking nothing first), delivers records from its positions for fetchable partitions,
honours pause/seek/commit, and on ``close()`` revokes its partitions. Tests script
rebalances with :meth:`FakeConsumer.rebalance_to` and failures with the cluster's
``construct_errors`` / ``poll_errors`` / ``commit_errors`` queues.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import ConsumerGroupMetadata, OffsetAndMetadata, TopicPartition


def make_record(tp: TopicPartition, offset: int, key: bytes | None, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(
        topic=tp.topic, partition=tp.partition, leader_epoch=0, offset=offset, timestamp=0,
        timestamp_type=0, key=key, value=value, headers=[], checksum=None,
        serialized_key_size=len(key or b""), serialized_value_size=len(value),
        serialized_header_size=0,
    )


class FakeCluster:
    def __init__(self, topics: dict[str, int], *, assign_after_polls: int = 1) -> None:
        self.logs: dict[TopicPartition, list[ConsumerRecord]] = {
            TopicPartition(t, p): [] for t, n in topics.items() for p in range(n)
        }
        self.committed: dict[TopicPartition, int] = {}
        self.commit_log: list[dict[TopicPartition, int]] = []
        self.assign_after_polls = assign_after_polls
        self.consumers: list[FakeConsumer] = []
        self.construct_errors: deque[BaseException] = deque()
        self.poll_errors: deque[BaseException] = deque()
        self.commit_errors: deque[BaseException] = deque()
        self.lock = threading.Lock()

    def produce(self, topic: str, partition: int, value: bytes, key: bytes | None = None) -> int:
        tp = TopicPartition(topic, partition)
        with self.lock:
            offset = len(self.logs[tp])
            self.logs[tp].append(make_record(tp, offset, key, value))
        return offset

    def factory(self, **kwargs: Any) -> FakeConsumer:
        if self.construct_errors:
            raise self.construct_errors.popleft()
        consumer = FakeConsumer(self, kwargs)
        self.consumers.append(consumer)
        return consumer


class FakeConsumer:
    def __init__(self, cluster: FakeCluster, kwargs: dict[str, Any]) -> None:
        self.cluster = cluster
        self.kwargs = kwargs
        self.calls: list[tuple[Any, ...]] = []
        self.listener: Any = None
        self.topics: list[str] = []
        self.assigned: set[TopicPartition] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.paused_set: set[TopicPartition] = set()
        self.polls = 0
        self.closed = False
        self.generation = 0
        self.joined_at_poll: int | None = None
        self._next_assignment: set[TopicPartition] | None = None
        self.max_records = 500

    # --- group ---------------------------------------------------------------------------
    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.calls.append(("subscribe", tuple(topics)))
        for t in topics:
            if not t or " " in t:
                raise ValueError(f'Topic name "{t}" is illegal')
        self.topics = list(topics)
        self.listener = listener

    def rebalance_to(self, partitions: set[TopicPartition]) -> None:
        """On the next poll: revoke everything, then assign ``partitions`` (eager protocol)."""
        self._next_assignment = set(partitions)

    def lose_then_rejoin(self) -> None:
        """On the next poll: the member was evicted (on_partitions_lost), then rejoins."""
        self._lost = True
        self._next_assignment = set(self.assigned)

    def _assign(self, new: set[TopicPartition]) -> None:
        if getattr(self, "_lost", False):
            self._lost = False
            self.listener.on_partitions_lost(set(self.assigned))
            self.assigned = set()
        self.listener.on_partitions_revoked(set(self.assigned))
        self.assigned = set(new)
        self.paused_set.clear()  # kafka-python forgets pauses on rebalance
        self.positions = {tp: self.cluster.committed.get(tp, 0) for tp in self.assigned}
        self.generation += 1
        self.listener.on_partitions_assigned(set(self.assigned))

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[ConsumerRecord]]:
        self.calls.append(("poll", timeout_ms))
        if self.closed:
            raise RuntimeError("poll on a closed consumer")
        self.polls += 1
        if self.cluster.poll_errors:
            raise self.cluster.poll_errors.popleft()
        if self.joined_at_poll is None and self.polls >= self.cluster.assign_after_polls:
            self.joined_at_poll = self.polls
            self._assign({tp for tp in self.cluster.logs if tp.topic in self.topics})
        elif self._next_assignment is not None:
            new, self._next_assignment = self._next_assignment, None
            self._assign(new)
        out: dict[TopicPartition, list[ConsumerRecord]] = {}
        budget = self.max_records
        for tp in sorted(self.assigned):
            if tp in self.paused_set or budget <= 0:
                continue
            with self.cluster.lock:
                records = self.cluster.logs[tp][self.positions[tp]:self.positions[tp] + budget]
            if records:
                out[tp] = list(records)
                self.positions[tp] += len(records)
                budget -= len(records)
        if not out and timeout_ms:
            threading.Event().wait(min(timeout_ms, 5) / 1000)
        return out

    def group_metadata(self) -> ConsumerGroupMetadata:
        return ConsumerGroupMetadata(group_id=self.kwargs.get("group_id"),
                                     generation_id=self.generation, member_id="fake-member-1")

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    # --- fetch control --------------------------------------------------------------------
    def pause(self, *tps: TopicPartition) -> None:
        self.calls.append(("pause", tps))
        for tp in tps:
            if tp not in self.assigned:
                raise KeyError(tp)
            self.paused_set.add(tp)

    def resume(self, *tps: TopicPartition) -> None:
        self.calls.append(("resume", tps))
        for tp in tps:
            self.paused_set.discard(tp)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_set)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.calls.append(("seek", tp, offset))
        if tp not in self.assigned:
            raise ValueError("Unassigned partition")
        self.positions[tp] = offset

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.calls.append(("commit", {tp: o.offset for tp, o in offsets.items()}))
        if self.cluster.commit_errors:
            raise self.cluster.commit_errors.popleft()
        plain = {tp: o.offset for tp, o in offsets.items()}
        self.cluster.committed.update(plain)
        self.cluster.commit_log.append(plain)

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        self.calls.append(("close", autocommit))
        if self.closed:
            return
        self.closed = True
        if self.assigned and self.listener is not None:
            self.listener.on_partitions_revoked(set(self.assigned))
        self.assigned = set()
