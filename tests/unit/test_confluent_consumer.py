"""The confluent-kafka consumer port on a fake ``confluent_kafka.Consumer`` (no broker):
records, error messages, commit errors, pending seeks, rebalance callbacks."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as CTP
from offsetlab.bus.ports import CommitRebalanced
from offsetlab.bus.transports.confluent.consumer import ConfluentConsumer
from offsetlab.bus.types import ConsumedRecord, TopicPartition

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)


class FakeConsumer:
    def __init__(self) -> None:
        self.queue: list[Message] = []
        self.calls: list[tuple[str, Any]] = []
        self.commit_error: KafkaError | None = None
        self.commit_result: list[CTP] | None = None
        self.seek_refusals = 0
        self.callbacks: dict[str, Any] = {}

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks

    def consume(self, num: int, timeout: float) -> list[Message]:
        out, self.queue = self.queue[:num], self.queue[num:]
        self.calls.append(("consume", (num, timeout)))
        return out

    def poll(self, timeout: float) -> Message | None:
        self.calls.append(("poll", timeout))
        return self.queue.pop(0) if self.queue else None

    def assign(self, partitions: list[CTP]) -> None:
        self.calls.append(("assign", [(p.topic, p.partition) for p in partitions]))

    def incremental_assign(self, partitions: list[CTP]) -> None:
        self.calls.append(("incremental_assign", [(p.topic, p.partition) for p in partitions]))

    def pause(self, partitions: list[CTP]) -> None:
        self.calls.append(("pause", [(p.topic, p.partition) for p in partitions]))

    def seek(self, tp: CTP) -> None:
        if self.seek_refusals:
            self.seek_refusals -= 1
            raise KafkaException(KafkaError(KafkaError._STATE))
        self.calls.append(("seek", (tp.topic, tp.partition, tp.offset)))

    def commit(self, *, offsets: list[CTP], asynchronous: bool) -> list[CTP] | None:
        assert asynchronous is False
        self.calls.append(("commit", [(p.topic, p.partition, p.offset) for p in offsets]))
        if self.commit_error is not None:
            raise KafkaException(self.commit_error)
        return self.commit_result if self.commit_result is not None else offsets


def msg(partition: int, offset: int, **kw: Any) -> Message:
    kw.setdefault("timestamp", (1, 1_700_000_000_000))
    return Message(topic="t", partition=partition, offset=offset, key=b"k", value=b"v", **kw)


def make(batch: int = 500, incremental: bool = False) -> tuple[ConfluentConsumer, FakeConsumer]:
    fake = FakeConsumer()
    return ConfluentConsumer(fake, "c", batch=batch, incremental=incremental), fake


class Notes:
    def __init__(self, client: ConfluentConsumer, pause: tuple[TopicPartition, ...] = ()) -> None:
        self.client, self.pause, self.seen = client, pause, []

    def on_assigned(self, partitions: tuple[TopicPartition, ...]) -> None:
        self.seen.append(("assigned", partitions, self.client.assignment()))
        if self.pause:
            self.client.pause(self.pause)

    def on_revoked(self, partitions: tuple[TopicPartition, ...]) -> None:
        self.seen.append(("revoked", partitions, self.client.assignment()))

    def on_lost(self, partitions: tuple[TopicPartition, ...]) -> None:
        self.seen.append(("lost", partitions, self.client.assignment()))


def test_records_are_consumed_records_and_one_record_does_not_wait_for_a_full_batch() -> None:
    client, fake = make(batch=3)
    assert client.poll(50) == () and fake.calls == [("consume", (3, 0)), ("poll", 0.05)]
    fake.calls.clear()
    fake.queue = [msg(0, 1, headers=[("h", b"1")], timestamp=(2, 5)), msg(0, 2),
                  msg(1, 0, timestamp=(0, -1))]
    records = client.poll(50)
    assert fake.calls == [("consume", (3, 0))]
    assert records == [
        ConsumedRecord("t", 0, 1, b"k", b"v", [("h", b"1")], 5, 1),
        ConsumedRecord("t", 0, 2, b"k", b"v", (), 1_700_000_000_000, 0),
        ConsumedRecord("t", 1, 0, b"k", b"v", (), -1, 0),
    ]
    assert all(type(r) is ConsumedRecord for r in records)
    with pytest.raises(AttributeError):
        records[0].offset = 6  # type: ignore[misc]  # still frozen
    fake.calls.clear()
    fake.queue = [msg(0, 3)]
    client._batch = 1
    fake.consume = lambda num, timeout: []  # type: ignore[method-assign]
    assert [r.offset for r in client.poll(50)] == [3]


def test_error_messages_are_skipped_logged_or_raised(caplog: pytest.LogCaptureFixture) -> None:
    client, fake = make()
    fake.queue = [Message(topic="t", partition=0, error=KafkaError(KafkaError._PARTITION_EOF)),
                  Message(topic="t", partition=0, error=KafkaError(KafkaError._MAX_POLL_EXCEEDED)),
                  msg(0, 7)]
    assert [r.offset for r in client.poll(10)] == [7]
    assert "_MAX_POLL_EXCEEDED" in caplog.text or "maximum poll" in caplog.text.lower()
    fake.queue = [Message(topic="t", partition=0,
                          error=KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))]
    with pytest.raises(KafkaException):
        client.poll(10)
    client._on_error(KafkaError(KafkaError._FATAL, fatal=True))
    with pytest.raises(KafkaException):
        client.poll(10)


@pytest.mark.parametrize("code", [KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION,
                                  KafkaError.UNKNOWN_MEMBER_ID, KafkaError._NO_OFFSET])
def test_commit_errors_of_a_group_that_moved_on_are_commit_rebalanced(code: int) -> None:
    client, fake = make()
    fake.commit_error = KafkaError(code)
    with pytest.raises(CommitRebalanced):
        client.commit({TP0: 5})
    fake.commit_error = None
    # what librdkafka returns for a partition whose commit failed (error is read-only on CTP)
    fake.commit_result = [SimpleNamespace(topic="t", partition=0, offset=5,  # type: ignore[list-item]
                                          error=KafkaError(code))]
    with pytest.raises(CommitRebalanced):
        client.commit({TP0: 5})


def test_other_commit_errors_are_the_client_s() -> None:
    client, fake = make()
    client.commit({TP0: 5, TP1: 2})
    assert fake.calls == [("commit", [("t", 0, 5), ("t", 1, 2)])]
    fake.commit_error = KafkaError(KafkaError._TRANSPORT)
    with pytest.raises(KafkaException):
        client.commit({TP0: 6})


def test_assign_comes_before_the_listener_so_its_pause_holds() -> None:
    client, fake = make()
    notes = Notes(client, pause=(TP1,))
    client.subscribe(["t"], notes)
    fake.callbacks["on_assign"](fake, [CTP("t", 1), CTP("t", 0)])
    assert fake.calls == [("assign", [("t", 1), ("t", 0)]), ("pause", [("t", 1)])]
    assert notes.seen == [("assigned", (TP0, TP1), frozenset({TP0, TP1}))]
    fake.callbacks["on_revoke"](fake, [CTP("t", 0), CTP("t", 1)])
    fake.callbacks["on_lost"](fake, [])
    assert notes.seen[1:] == [("revoked", (TP0, TP1), frozenset()), ("lost", (), frozenset())]


def test_cooperative_assignments_add_and_remove() -> None:
    client, fake = make(incremental=True)
    notes = Notes(client)
    client.subscribe(["t"], notes)
    fake.callbacks["on_assign"](fake, [CTP("t", 0)])
    fake.callbacks["on_assign"](fake, [CTP("t", 1)])
    assert fake.calls[-1] == ("incremental_assign", [("t", 1)])
    assert client.assignment() == {TP0, TP1}
    fake.callbacks["on_revoke"](fake, [CTP("t", 0)])
    assert client.assignment() == {TP1}


def test_a_seek_refused_before_the_fetcher_started_is_applied_at_the_next_poll() -> None:
    client, fake = make()
    client.subscribe(["t"], Notes(client))
    fake.callbacks["on_assign"](fake, [CTP("t", 0), CTP("t", 1)])
    fake.seek_refusals = 1
    client.seek(TP0, 4)
    assert client._pending_seeks == {TP0: 4}
    fake.queue = [msg(0, 0), msg(1, 0)]  # partition 0's record predates the seek
    fake.seek_refusals = 1  # still not ready at the next poll
    assert [(r.partition, r.offset) for r in client.poll(10)] == [(1, 0)]
    fake.queue = [msg(0, 4)]
    assert [(r.partition, r.offset) for r in client.poll(10)] == [(0, 4)]
    assert ("seek", ("t", 0, 4)) in fake.calls and client._pending_seeks == {}
    fake.seek_refusals = 1
    client.seek(TP1, 9)
    fake.callbacks["on_revoke"](fake, [CTP("t", 0), CTP("t", 1)])
    assert client._pending_seeks == {}  # a revoked partition's pending seek is dropped
