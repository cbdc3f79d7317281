"""ConsumerRunner against the embedded Apache Kafka (group.initial.rebalance.delay.ms=0).

What the issue asks: ``run()`` returns only after the assignment; lifecycle events arrive in
order; a handler crash follows the crash policy; ``stop()`` leaves the group so another
member takes the partitions over without waiting for a session timeout; join failures raise.
Latencies are printed (run with ``-s``) and reported, never asserted as speeds.

Every test runs on both clients (``client``): the runner's contract is the same on
kafka-python and confluent-kafka.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import TopicPartition
from offsetlab.brokers import BrokerHandle
from offsetlab.bus.config import CrashPolicy, RunnerConfig
from offsetlab.bus.errors import JoinFailed
from offsetlab.bus.lifecycle import (
    Crash,
    Disconnect,
    GroupJoin,
    LifecycleEvent,
    Rebalance,
    RunnerState,
    Stop,
)
from offsetlab.bus.runner import ConsumerRunner
from offsetlab.lab.raw import warmed_consumer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SESSION_TIMEOUT_MS = 30_000
CLIENTS = ("kafka-python", "confluent-kafka")


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    """The client library under the runner."""
    return str(request.param)


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Recorder:
    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: LifecycleEvent) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, cls: type) -> list[Any]:
        with self._lock:
            return [e for e in self.events if isinstance(e, cls)]

    def kinds(self) -> list[str]:
        with self._lock:
            return [e.kind.value for e in self.events]


@pytest.fixture
def topic_factory(kafka_broker: BrokerHandle, unique: str) -> Iterator[Callable[[int], str]]:
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    made: list[str] = []

    def make(partitions: int) -> str:
        name = f"runner-{unique}-{len(made)}"
        admin.create_topics([NewTopic(name, partitions, 1)])
        made.append(name)
        return name

    try:
        yield make
    finally:
        admin.close()


@pytest.fixture
def runners() -> Iterator[list[ConsumerRunner]]:
    made: list[ConsumerRunner] = []
    yield made
    for r in made:
        r.stop(timeout=30)


def produce(bootstrap: str, topic: str, values: list[bytes], partition: int | None = None) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for v in values:
            producer.send(topic, value=v, partition=partition).get(timeout=30)
    finally:
        producer.close(timeout=10)


def committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return probe.committed(tp, timeout_ms=10_000)
    finally:
        probe.close(autocommit=False)


def make_runner(runners: list[ConsumerRunner], broker: BrokerHandle, topic: str, group: str,
                name: str, rec: Recorder, client: str, **kw: Any) -> ConsumerRunner:
    cfg = RunnerConfig(
        bootstrap_servers=broker.bootstrap_servers, group_id=group, topics=(topic,), name=name,
        crash_policy=kw.pop("crash_policy", CrashPolicy(backoff_s=0.2, max_backoff_s=1.0)),
        consumer_settings={"auto_offset_reset": "earliest", "session_timeout_ms": SESSION_TIMEOUT_MS},
        client=client,
    )
    # The topic's partitions are fetched before subscribing (the seed's topics existed before
    # its consumers started): without it kafka-python 3.0.12's first JoinGroup can race its
    # first metadata fetch and the first generation assigns nothing (see the runner's
    # "Known limitation"); seen in 1 of 2 fresh-clone runs of this file. The confluent-kafka
    # transport fetches metadata when it opens the consumer.
    if client == "kafka-python":
        kw.setdefault("consumer_factory", warmed_consumer((topic,)))
    r = ConsumerRunner(cfg, listeners=[rec], **kw)
    runners.append(r)
    return r


def test_run_returns_after_assignment_and_events_are_in_order(
    kafka_broker: BrokerHandle, topic_factory: Callable[[int], str], unique: str,
    runners: list[ConsumerRunner], client: str,
) -> None:
    topic = topic_factory(3)
    rec = Recorder()
    r = make_runner(runners, kafka_broker, topic, f"g-{unique}", f"c-{unique}", rec, client,
                    handler=lambda m: None)
    called = time.monotonic()
    join = r.run(timeout=60)
    returned = time.monotonic()
    assert isinstance(join, GroupJoin)
    assert set(join.assignment) == {TopicPartition(topic, p) for p in range(3)}
    assert join.member_id.startswith(f"c-{unique}") and join.generation >= 1
    assert called <= join.at <= returned  # returned after the assignment arrived
    assert r.state is RunnerState.RUNNING
    assert rec.kinds()[:3] == ["connect", "rebalance", "group_join"]
    print(f"\nrun(): join {join.duration_s * 1000:.0f} ms after subscribe; returned "
          f"{(returned - join.at) * 1000:.1f} ms after the assignment callback")
    assert r.stop(timeout=30) is RunnerState.STOPPED
    kinds = rec.kinds()
    assert kinds[-3:] == ["stop", "rebalance", "disconnect"]
    revoked = rec.of(Rebalance)[-1]
    assert revoked.phase == "revoked" and set(revoked.partitions) == set(join.assignment)
    ats = [e.at for e in rec.events]
    assert ats == sorted(ats)  # one runner's events are delivered in the order they happened


def test_two_members_split_and_stop_hands_over_without_session_timeout(
    kafka_broker: BrokerHandle, topic_factory: Callable[[int], str], unique: str,
    runners: list[ConsumerRunner], client: str,
) -> None:
    topic = topic_factory(3)
    group = f"g-{unique}"
    all_tps = {TopicPartition(topic, p) for p in range(3)}
    rec1, rec2 = Recorder(), Recorder()
    r1 = make_runner(runners, kafka_broker, topic, group, f"a-{unique}", rec1, client, handler=lambda m: None)
    r2 = make_runner(runners, kafka_broker, topic, group, f"b-{unique}", rec2, client, handler=lambda m: None)
    r1.run(timeout=60)
    t0 = time.monotonic()
    r2.run(timeout=60)

    def settled() -> bool:
        a, b = r1.assignment(), r2.assignment()
        return bool(a) and bool(b) and not (a & b) and (a | b) == all_tps

    wait_for(settled, 60, "both members assigned")
    settle_s = time.monotonic() - t0
    t1 = time.monotonic()
    r1.stop(timeout=30)
    wait_for(lambda: r2.assignment() == all_tps, SESSION_TIMEOUT_MS / 1000, "hand-over")
    handover_s = time.monotonic() - t1
    print(f"\ntwo members settled {settle_s:.2f} s after the second run(); after stop() the "
          f"other member had all partitions in {handover_s:.2f} s (session timeout "
          f"{SESSION_TIMEOUT_MS / 1000:.0f} s)")
    assert handover_s < SESSION_TIMEOUT_MS / 1000
    assert r1.state is RunnerState.STOPPED and r2.state is RunnerState.RUNNING
    # r1 gave partitions back cleanly (revoked, not lost) and r2 rebalanced at least twice
    assert [e.phase for e in rec1.of(Rebalance) if e.phase != "assigned"][-1] == "revoked"
    assert len([e for e in rec2.of(Rebalance) if e.phase == "assigned"]) >= 2


def test_handler_crash_restarts_and_redelivers(
    kafka_broker: BrokerHandle, topic_factory: Callable[[int], str], unique: str,
    runners: list[ConsumerRunner], client: str,
) -> None:
    topic = topic_factory(1)
    group = f"g-{unique}"
    tp = TopicPartition(topic, 0)
    produce(kafka_broker.bootstrap_servers, topic, [b"m%d" % i for i in range(5)], partition=0)
    attempts: list[int] = []
    failed = threading.Event()

    def handler(m: Any) -> None:
        attempts.append(m.offset)
        if m.offset == 2 and not failed.is_set():
            failed.set()
            raise ConnectionError("dependency down")

    rec = Recorder()
    r = make_runner(runners, kafka_broker, topic, group, f"c-{unique}", rec, client, handler=handler)
    r.run(timeout=60)
    wait_for(lambda: attempts[-1:] == [4], 60, "all records after the restart")
    assert attempts == [0, 1, 2, 2, 3, 4]
    crash = rec.of(Crash)[0]
    assert crash.restart is True and isinstance(crash.error, ConnectionError)
    joins = rec.of(GroupJoin)
    assert [j.incarnation for j in joins] == [1, 2]
    kinds = rec.kinds()
    i = kinds.index("crash")
    assert kinds[i:i + 3] == ["crash", "rebalance", "disconnect"] and kinds[i + 3] == "connect"
    wait_for(lambda: any(tp in c.offsets and c.offsets[tp] == 5 for c in rec.events
                         if c.kind.value == "commit"), 30, "commit of 5")
    r.stop(timeout=30)
    assert committed(kafka_broker.bootstrap_servers, group, tp) == 5


def test_handler_crash_with_stop_policy_commits_settled_and_ends_crashed(
    kafka_broker: BrokerHandle, topic_factory: Callable[[int], str], unique: str,
    runners: list[ConsumerRunner], client: str,
) -> None:
    topic = topic_factory(1)
    group = f"g-{unique}"
    produce(kafka_broker.bootstrap_servers, topic, [b"m%d" % i for i in range(5)], partition=0)

    def handler(m: Any) -> None:
        if m.offset == 2:
            raise ValueError("bad data")

    rec = Recorder()
    r = make_runner(runners, kafka_broker, topic, group, f"c-{unique}", rec, client, handler=handler,
                    crash_policy=CrashPolicy(restart=False))
    r.run(timeout=60)
    wait_for(lambda: r.state is RunnerState.CRASHED, 60, "CRASHED")
    assert [c.restart for c in rec.of(Crash)] == [False]
    assert isinstance(rec.events[-1], Disconnect) and not rec.of(Stop)
    assert committed(kafka_broker.bootstrap_servers, group, TopicPartition(topic, 0)) == 2


def test_pause_survives_a_rebalance(
    kafka_broker: BrokerHandle, topic_factory: Callable[[int], str], unique: str,
    runners: list[ConsumerRunner], client: str,
) -> None:
    topic = topic_factory(2)
    group = f"g-{unique}"
    tps = [TopicPartition(topic, p) for p in range(2)]
    got: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    rec_a, rec_b = Recorder(), Recorder()
    a = make_runner(runners, kafka_broker, topic, group, f"a-{unique}", rec_a, client,
                    handler=lambda m: got["a"].append((m.partition, m.offset)))
    a.run(timeout=60)
    a.pause(tps).result(timeout=10)
    b = make_runner(runners, kafka_broker, topic, group, f"b-{unique}", rec_b, client,
                    handler=lambda m: got["b"].append((m.partition, m.offset)))
    b.run(timeout=60)
    wait_for(lambda: len(a.assignment()) == 1 and len(b.assignment()) == 1, 60, "split")
    # the runner stores the new assignment just before it re-applies the pause and says so
    wait_for(lambda: any(e.kind.value == "pause" and e.reapplied for e in rec_a.events), 10,
             "the pause re-applied after the rebalance")
    produce(kafka_broker.bootstrap_servers, topic, [b"x"], partition=0)
    produce(kafka_broker.bootstrap_servers, topic, [b"y"], partition=1)
    b_part = next(iter(b.assignment())).partition
    wait_for(lambda: got["b"] == [(b_part, 0)], 30, "b consumes its partition")
    time.sleep(1.0)  # a polls ~10 times meanwhile; its partition stays held
    assert got["a"] == []
    a.resume(tps).result(timeout=10)
    a_part = 1 - b_part
    wait_for(lambda: got["a"] == [(a_part, 0)], 30, "a consumes after resume")


def test_join_fails_for_an_invalid_topic_and_an_unreachable_broker(
    kafka_broker: BrokerHandle, unique: str, runners: list[ConsumerRunner], client: str,
) -> None:
    rec = Recorder()
    cfg = RunnerConfig(bootstrap_servers=kafka_broker.bootstrap_servers, group_id=f"g-{unique}",
                       topics=("not a valid topic!",), name=f"bad-{unique}", client=client)
    r = ConsumerRunner(cfg, handler=lambda m: None, listeners=[rec])
    runners.append(r)
    with pytest.raises(JoinFailed) as info:
        r.run(timeout=60)
    assert isinstance(info.value.__cause__, ValueError)
    assert r.state is RunnerState.CRASHED and rec.kinds() == ["connect", "crash", "disconnect"]

    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg2 = RunnerConfig(bootstrap_servers=f"127.0.0.1:{port}", group_id=f"g-{unique}",
                        topics=("t",), name=f"nobroker-{unique}",
                        consumer_settings={"bootstrap_timeout_ms": 2000}, client=client)
    r2 = ConsumerRunner(cfg2, handler=lambda m: None)
    runners.append(r2)
    t0 = time.monotonic()
    with pytest.raises(JoinFailed) as info2:
        r2.run(timeout=60)
    print(f"\nunreachable bootstrap: JoinFailed after {time.monotonic() - t0:.2f} s "
          f"({type(info2.value.__cause__).__name__})")
    if client == "kafka-python":
        assert type(info2.value.__cause__).__name__ == "KafkaTimeoutError"
        assert not [t for t in threading.enumerate() if t.name == f"kafka-io-nobroker-{unique}"]
    else:  # the transport closed the consumer whose metadata request timed out
        assert type(info2.value.__cause__).__name__ == "KafkaException"
