"""The timeline recorder: rows, spans, threads, files, and the hooks for clients and runner.

The producer and consumer hooks are fed kafka-python's own types (its ``Future``,
``RecordMetadata``, ``ConsumerRecord``, ``TopicPartition``) by hand-written fakes; the runner
hook is fed the real lifecycle events of ``offsetlab.bus.lifecycle``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

import pandas as pd
import pytest
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaTimeoutError
from kafka.future import Future
from kafka.producer.future import RecordMetadata
from offsetlab.bus import lifecycle as lc
from offsetlab.lab.timeline import (
    COLUMNS,
    RecordingProducer,
    Timeline,
    TimelineRebalanceListener,
    jsonable,
    record_consumed,
    recorded_send,
    runner_listener,
)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_rows_are_measured_from_creation_and_sorted_by_time() -> None:
    clock = FakeClock()
    tl = Timeline(clock=clock)
    clock.now += 2.0
    tl.record("producer", "produced", topic="t", partition=1, offset=7, key=b"k-1")
    tl.record("consumer-1", "connect", at=1000.5)  # happened earlier, recorded later
    frame = tl.to_frame()
    assert list(frame.columns) == list(COLUMNS)
    assert frame.what.tolist() == ["connect", "produced"]
    assert frame.t.tolist() == [0.5, 2.0]
    produced = frame.iloc[1]
    assert (produced.topic, produced.partition, produced.offset, produced.key) == ("t", 1, 7, "k-1")
    assert frame.iloc[0].key is None and pd.isna(frame.iloc[0].partition)


def test_span_records_start_and_end_and_keeps_the_error() -> None:
    clock = FakeClock()
    tl = Timeline(clock=clock)
    with tl.span("consumer-1", "join", topic="t") as extra:
        clock.now += 1.5
        extra["members"] = 2
    with pytest.raises(ValueError, match="boom"), tl.span("consumer-1", "pause"):
        clock.now += 1.0
        raise ValueError("boom")
    frame = tl.to_frame()
    assert list(zip(frame.what, frame.phase, frame.t, strict=True)) == [
        ("join", "start", 0.0), ("join", "end", 1.5), ("pause", "start", 1.5), ("pause", "end", 2.5)]
    assert frame.detail[1] == {"members": 2}
    assert frame.detail[3] == {"error": "ValueError: boom"}


def test_record_rejects_an_unknown_phase() -> None:
    with pytest.raises(ValueError, match="phase"):
        Timeline().record("a", "b", phase="middle")


def test_recording_from_many_threads_loses_nothing() -> None:
    tl = Timeline()
    threads, per_thread = 8, 400
    barrier = threading.Barrier(threads)

    def work(i: int) -> None:
        barrier.wait(timeout=10)
        for n in range(per_thread):
            tl.record(f"client-{i}", "consumed", partition=i, offset=n)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    frame = tl.to_frame()
    assert len(frame) == threads * per_thread
    assert sorted(frame.seq) == list(range(threads * per_thread))
    for i in range(threads):
        offsets = frame[frame.who == f"client-{i}"].sort_values("seq").offset.tolist()
        assert offsets == list(range(per_thread))


def test_save_and_load_round_trip(tmp_path) -> None:
    tl = Timeline()
    tl.record("producer", "produced", topic="t", partition=0, offset=3, key="k",
              detail={"value": "v", "nested": {"a": [1, 2]}})
    tl.record("consumer", "crash", detail="plain text")
    with tl.span("consumer", "pause"):
        pass
    csv_path = tl.save(tmp_path / "out", name="e01")
    assert csv_path == tmp_path / "out" / "e01.csv"
    again = Timeline.load(tmp_path / "out", name="e01")
    assert again.to_frame().equals(tl.to_frame())
    assert Timeline.load(csv_path).to_frame().equals(tl.to_frame())
    assert again.started_at == tl.started_at
    from_csv = pd.read_csv(csv_path)
    assert from_csv.what.tolist() == ["produced", "crash", "pause", "pause"]
    assert json.loads(from_csv.detail[0]) == {"nested": {"a": [1, 2]}, "value": "v"}


def test_load_refuses_other_json(tmp_path) -> None:
    (tmp_path / "timeline.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="Timeline.save"):
        Timeline.load(tmp_path)


# -- producer ------------------------------------------------------------------------------
class FakeProducer:
    """Records sends; each returns a real kafka-python Future the test resolves."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, Any, dict[str, Any]]] = []
        self.futures: list[Future] = []
        self.flushed = 0

    def send(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> Future:
        self.sent.append((topic, value, key, kwargs))
        future = Future()
        self.futures.append(future)
        return future

    def flush(self) -> None:
        self.flushed += 1


def _metadata(topic: str, partition: int, offset: int) -> RecordMetadata:
    return RecordMetadata(topic, partition, TopicPartition(topic, partition), offset, 0, None, 1, 1, 0)


def test_recorded_send_records_the_acknowledged_partition_and_offset() -> None:
    tl = Timeline()
    producer = FakeProducer()
    future = recorded_send(producer, tl, "producer", "orders", b"v", key=b"k-2",
                           headers=[("h", b"1")])
    assert producer.sent == [("orders", b"v", b"k-2", {"headers": [("h", b"1")]})]
    assert len(tl) == 0, "nothing is produced before the broker acknowledges"
    future.success(_metadata("orders", 2, 41))
    row = tl.rows()[0]
    assert (row.who, row.what, row.topic, row.partition, row.offset, row.key) == (
        "producer", "produced", "orders", 2, 41, "k-2")
    assert future.value.offset == 41  # the caller's future is untouched


def test_recorded_send_records_a_failure_with_its_class() -> None:
    tl = Timeline()
    producer = FakeProducer()
    wrapped = RecordingProducer(producer, tl, "producer-1")
    wrapped.send("orders", b"v", key="k", record_send=True)
    producer.futures[0].failure(KafkaTimeoutError("no ack"))
    assert [(r.what, r.who) for r in tl.rows()] == [("send", "producer-1"), ("produce_failed", "producer-1")]
    assert tl.rows()[1].detail == {"error": "KafkaTimeoutError: no ack"}
    wrapped.flush()
    assert producer.flushed == 1


def test_recorded_send_records_and_reraises_a_send_that_raises() -> None:
    class RaisingProducer(FakeProducer):
        def send(self, topic: str, value: Any = None, key: Any = None, **kwargs: Any) -> Future:
            raise KafkaTimeoutError("Failed to update metadata after 1.0 secs.")

    tl = Timeline()
    with pytest.raises(KafkaTimeoutError):
        recorded_send(RaisingProducer(), tl, "producer", "missing-topic", b"v")
    row = tl.rows()[0]
    assert (row.what, row.topic) == ("produce_failed", "missing-topic")
    assert row.detail == {"error": "KafkaTimeoutError: Failed to update metadata after 1.0 secs.",
                          "raised_by": "send"}


# -- consumer ------------------------------------------------------------------------------
def _record(topic: str, partition: int, offset: int, key: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(topic, partition, -1, offset, 0, 0, key, b"value", [], None, 1, 5, 0)


def test_record_consumed_takes_topic_partition_offset_and_key() -> None:
    tl = Timeline()
    record_consumed(tl, "consumer-2", _record("t", 1, 9, b"key-9"), detail={"attempt": 2})
    row = tl.rows()[0]
    assert (row.who, row.what, row.topic, row.partition, row.offset, row.key, row.detail) == (
        "consumer-2", "consumed", "t", 1, 9, "key-9", {"attempt": 2})


class InnerListener(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.calls: list[tuple[str, set[TopicPartition]]] = []

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.calls.append(("revoked", set(revoked)))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.calls.append(("assigned", set(assigned)))

    def on_partitions_lost(self, lost: Any) -> None:
        self.calls.append(("lost", set(lost)))


def test_rebalance_listener_records_then_delegates() -> None:
    tl = Timeline()
    inner = InnerListener()
    listener = TimelineRebalanceListener(tl, "consumer-1", inner)
    assert isinstance(listener, ConsumerRebalanceListener)
    listener.on_partitions_assigned({TopicPartition("t", 2), TopicPartition("t", 0)})
    listener.on_partitions_revoked({TopicPartition("t", 2), TopicPartition("u", 1)})
    listener.on_partitions_lost(set())
    rows = tl.rows()
    assert [(r.what, r.topic, r.detail) for r in rows] == [
        ("assigned", "t", {"partitions": [0, 2]}),
        ("revoked", None, {"partitions": ["t:2", "u:1"]}),
        ("lost", None, {"partitions": []}),
    ]
    assert [c[0] for c in inner.calls] == ["assigned", "revoked", "lost"]


# -- the runner ----------------------------------------------------------------------------
def test_runner_events_become_rows_on_the_timeline_clock() -> None:
    clock = FakeClock(500.0)
    tl = Timeline(clock=clock)
    listen = runner_listener(tl)
    tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
    listen(lc.Connect(at=500.1, runner="r1"))
    listen(lc.GroupJoin(at=503.0, runner="r1", member_id="m-1", generation=4,
                        assignment=(tp1, tp0), duration_s=2.5))
    listen(lc.Rebalance(at=503.0, runner="r1", phase="assigned", partitions=(tp0, tp1)))
    listen(lc.Pause(at=504.0, runner="r1", partitions=(tp0,)))
    listen(lc.Resume(at=506.0, runner="r1", partitions=(tp0,)))
    listen(lc.Commit(at=506.5, runner="r1", offsets={tp0: 5}))
    listen(lc.Crash(at=507.0, runner="r1", error=ValueError("bad"), restart=True, restarts=1))
    frame = tl.to_frame()
    assert list(zip(frame.what, frame.phase, frame.t.round(6), strict=True)) == [
        ("connect", "", 0.1), ("join", "start", 0.5), ("join", "end", 3.0), ("assigned", "", 3.0),
        ("pause", "start", 4.0), ("pause", "end", 6.0), ("commit", "", 6.5), ("crash", "", 7.0)]
    assert set(frame.who) == {"r1"}
    join_end = frame.iloc[2]
    assert join_end.topic == "t"
    assert join_end.detail == {"member_id": "m-1", "generation": 4, "assignment": [0, 1],
                               "duration_s": 2.5, "incarnation": 1}
    assert frame.iloc[3].detail == {"partitions": [0, 1]}
    assert frame.iloc[4].detail == {"partitions": [0], "reapplied": False}
    assert frame.iloc[6].detail == {"offsets": {"t:0": 5}}
    assert frame.iloc[7].detail == {"error": "ValueError: bad", "restart": True, "restarts": 1,
                                    "during_join": False}


def test_runner_listener_reads_new_fields_and_never_raises() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Heartbeat(lc.LifecycleEvent):
        kind: str = "heartbeat"
        latency_ms: int = 0

    tl = Timeline()
    listen = runner_listener(tl, who="lane-a")
    listen(Heartbeat(at=tl.t0 + 1.0, runner="r9", latency_ms=12))
    listen(object())  # not an event at all: logged, not raised into the runner
    rows = tl.rows()
    assert (rows[0].who, rows[0].what, rows[0].detail) == ("lane-a", "heartbeat", {"latency_ms": 12})


def test_jsonable_makes_kafka_and_python_values_plain() -> None:
    from kafka.structs import OffsetAndMetadata

    assert jsonable({TopicPartition("t", 1): OffsetAndMetadata(4, "", -1)}) == {"t:1": 4}
    assert jsonable({3, 1, 2}) == [1, 2, 3]
    assert jsonable(b"\xffx") == "\ufffdx"
    assert jsonable(lc.LifecycleKind.CRASH) == "crash"
    assert jsonable(KeyError) == "KeyError"
    assert jsonable(RuntimeError()) == "RuntimeError"
    assert jsonable(KafkaTimeoutError()) == "KafkaTimeoutError"
    assert json.dumps(jsonable({"e": RuntimeError(), "tp": (TopicPartition("a", 0),)}))


def test_deliveries_count_each_message_and_who_consumed_it() -> None:
    from offsetlab.lab.timeline import deliveries

    tl = Timeline()
    for p, o, k in [(0, 0, "a"), (0, 1, "b"), (1, 0, "c")]:
        tl.record("producer", "produced", topic="t", partition=p, offset=o, key=k)
    tl.record("c1", "consumed", topic="t", partition=0, offset=0, key="a")
    tl.record("c2", "consumed", topic="t", partition=0, offset=0, key="a")  # redelivered
    tl.record("c1", "consumed", topic="t", partition=0, offset=0, key="a")
    tl.record("c2", "consumed", topic="t", partition=1, offset=0, key="c")
    tl.record("c2", "commit", detail={"offsets": {"t:1": 1}})
    out = deliveries(tl.to_frame())
    assert out.to_dict("records") == [
        {"topic": "t", "partition": 0, "offset": 0, "key": "a", "produced": 1, "consumed": 3,
         "consumers": ("c1", "c2")},
        {"topic": "t", "partition": 0, "offset": 1, "key": "b", "produced": 1, "consumed": 0,
         "consumers": ()},
        {"topic": "t", "partition": 1, "offset": 0, "key": "c", "produced": 1, "consumed": 1,
         "consumers": ("c2",)},
    ]
    assert deliveries(Timeline().to_frame()).empty
