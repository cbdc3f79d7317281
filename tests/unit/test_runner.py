"""ConsumerRunner on a hand-written fake consumer (no broker): join handle, settling and
commits, crash policy, pause across rebalances, stop, lifecycle event order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import kafka.errors as kafka_errors
import pytest
from fakes_consumer import FakeCluster, FakeConsumer
from kafka.structs import TopicPartition
from offsetlab.bus.config import CrashPolicy, RunnerConfig
from offsetlab.bus.errors import ConfigError, JoinFailed, JoinTimeout, RunnerStateError
from offsetlab.bus.lifecycle import (
    Commit,
    Crash,
    GroupJoin,
    LifecycleEvent,
    LifecycleKind,
    Pause,
    Rebalance,
    RunnerState,
)
from offsetlab.bus.runner import BatchContext, ConsumerRunner

pytestmark = pytest.mark.timeout(30)

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


def wait_for(cond: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def config(**kw: object) -> RunnerConfig:
    base: dict[str, object] = dict(
        bootstrap_servers="fake:9092", group_id="g", topics=("t",), name="r",
        poll_timeout_ms=10, join_poll_timeout_ms=5,
        crash_policy=CrashPolicy(backoff_s=0.0, max_backoff_s=0.0),
    )
    base.update(kw)
    return RunnerConfig(**base)  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []
        self.threads: set[str] = set()

    def __call__(self, event: LifecycleEvent) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind.value for e in self.events]

    def of(self, cls: type) -> list:
        return [e for e in self.events if isinstance(e, cls)]


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster({"t": 2})


@pytest.fixture
def runners() -> Iterator[list[ConsumerRunner]]:
    made: list[ConsumerRunner] = []
    yield made
    for r in made:
        r.stop(timeout=10)


def make(runners: list[ConsumerRunner], cluster: FakeCluster, rec: Recorder, **kw: object) -> ConsumerRunner:
    cfg_kw = {k: kw.pop(k) for k in list(kw) if k in RunnerConfig.__dataclass_fields__}
    r = ConsumerRunner(config(**cfg_kw), listeners=[rec], consumer_factory=cluster.factory, **kw)  # type: ignore[arg-type]
    runners.append(r)
    return r


def test_needs_exactly_one_handler(cluster: FakeCluster) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        ConsumerRunner(config(), consumer_factory=cluster.factory)
    with pytest.raises(ConfigError, match="exactly one"):
        ConsumerRunner(config(), handler=print, batch_handler=lambda rs, c: None,
                       consumer_factory=cluster.factory)


def test_run_returns_only_after_assignment(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    cluster.assign_after_polls = 8
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda rec_: None)
    assert r.state is RunnerState.CREATED
    join = r.run(timeout=10)
    consumer = cluster.consumers[0]
    assert consumer.joined_at_poll == 8 and consumer.polls >= 8
    assert isinstance(join, GroupJoin)
    assert join.assignment == (T0, T1) and join.member_id == "fake-member-1"
    assert join.generation == 1 and join.duration_s >= 0
    assert r.state is RunnerState.RUNNING and r.assignment() == {T0, T1}
    # the kafka settings reached the consumer; auto-commit is off
    assert consumer.kwargs["enable_auto_commit"] is False and consumer.kwargs["group_id"] == "g"
    # listeners saw connect, the assignment, and the join (no empty "revoked"), on the runner thread
    assert rec.kinds()[:3] == ["connect", "rebalance", "group_join"]
    assert rec.threads == {"offsetlab-runner-r"}
    # joined while polling with the short join timeout, then the steady-state one
    polls = [c[1] for c in consumer.calls if c[0] == "poll"]
    assert polls[0] == 5
    wait_for(lambda: consumer.polls > 10, what="more polls")
    assert [c[1] for c in consumer.calls if c[0] == "poll"][-1] == 10


def test_start_returns_at_once_and_handle_completes(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    cluster.assign_after_polls = 10**9  # no assignment until the test lets it happen
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda rec_: None)
    handle = r.start()
    assert r.start() is handle  # idempotent
    assert not handle.done()  # the fake cannot have assigned anything yet
    cluster.assign_after_polls = 1
    join = handle.wait(10)
    assert handle.done() and handle.completed_at is not None and handle.completed_at >= join.at


def test_message_handler_commits_offset_plus_one(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    for i in range(3):
        cluster.produce("t", 0, b"a%d" % i)
    cluster.produce("t", 1, b"b0")
    seen: list[tuple[int, int]] = []
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: seen.append((m.partition, m.offset)))
    r.run(timeout=10)
    wait_for(lambda: cluster.committed == {T0: 3, T1: 1}, what="commits")
    assert sorted(seen) == [(0, 0), (0, 1), (0, 2), (1, 0)]
    commits = rec.of(Commit)
    assert commits and dict(commits[-1].offsets) == {T0: 3, T1: 1}
    # nothing is committed twice for the same position
    assert len(cluster.commit_log) == 1


def test_handler_crash_restart_redelivers_the_failed_record(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    for i in range(5):
        cluster.produce("t", 0, b"m%d" % i)
    attempts: list[int] = []
    failed_once = threading.Event()

    def handler(m: object) -> None:
        attempts.append(m.offset)  # type: ignore[attr-defined]
        if m.offset == 2 and not failed_once.is_set():  # type: ignore[attr-defined]
            failed_once.set()
            raise ValueError("dependency down")

    rec = Recorder()
    r = make(runners, cluster, rec, handler=handler)
    r.run(timeout=10)
    wait_for(lambda: cluster.committed.get(T0) == 5, what="all 5 committed after restart")
    assert attempts == [0, 1, 2, 2, 3, 4]
    assert cluster.commit_log[0] == {T0: 2}  # 0 and 1 were committed before the crash
    crash = rec.of(Crash)[0]
    assert crash.restart is True and isinstance(crash.error, ValueError) and not crash.during_join
    assert len(cluster.consumers) == 2 and cluster.consumers[0].closed
    assert ("seek", T0, 2) in cluster.consumers[0].calls
    kinds = rec.kinds()
    i = kinds.index("crash")
    assert kinds[i:i + 3] == ["crash", "rebalance", "disconnect"]  # close revokes, then disconnect
    assert "connect" in kinds[i:] and "group_join" in kinds[i:]
    assert r.state is RunnerState.RUNNING and r.restarts == 1


def test_handler_crash_with_stop_policy_ends_crashed(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    for i in range(4):
        cluster.produce("t", 0, b"m%d" % i)

    def handler(m: object) -> None:
        if m.offset == 1:  # type: ignore[attr-defined]
            raise KeyError("bad data")

    rec = Recorder()
    r = make(runners, cluster, rec, handler=handler, crash_policy=CrashPolicy(restart=False))
    r.run(timeout=10)
    wait_for(lambda: r.state is RunnerState.CRASHED, what="CRASHED")
    assert cluster.committed == {T0: 1}
    assert len(cluster.consumers) == 1 and cluster.consumers[0].closed
    crash = rec.of(Crash)[0]
    assert crash.restart is False and isinstance(r.last_error, KeyError)
    assert rec.kinds()[-1] == "disconnect"
    with pytest.raises(RunnerStateError):
        r.start()


def test_fatal_errors_and_max_restarts(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    cluster.produce("t", 0, b"poison")
    rec = Recorder()

    def always_fails(m: object) -> None:
        raise ValueError("poison")

    r = make(runners, cluster, rec, handler=always_fails,
             crash_policy=CrashPolicy(max_restarts=2, backoff_s=0.0, max_backoff_s=0.0))
    r.run(timeout=10)
    wait_for(lambda: r.state is RunnerState.CRASHED, what="CRASHED after max restarts")
    assert [c.restart for c in rec.of(Crash)] == [True, True, False]
    assert len(cluster.consumers) == 3 and T0 not in cluster.committed

    cluster2 = FakeCluster({"t": 1})
    cluster2.produce("t", 0, b"x")
    rec2 = Recorder()

    def type_bug(m: object) -> None:
        raise TypeError("bug")

    r2 = make(runners, cluster2, rec2, handler=type_bug,
              crash_policy=CrashPolicy(fatal=(TypeError,), backoff_s=0.0, max_backoff_s=0.0))
    r2.run(timeout=10)
    wait_for(lambda: r2.state is RunnerState.CRASHED, what="fatal -> CRASHED")
    assert [c.restart for c in rec2.of(Crash)] == [False]


def test_batch_handler_commits_only_the_contiguous_settled_prefix(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    for i in range(5):
        cluster.produce("t", 0, b"m%d" % i)
    deliveries: list[list[int]] = []

    def batch(records: list, ctx: BatchContext) -> None:
        deliveries.append([m.offset for m in records])
        for m in records:
            if m.offset == 2 and len(deliveries) == 1:
                continue  # "fails", left unsettled
            ctx.settle(m)

    rec = Recorder()
    r = make(runners, cluster, rec, batch_handler=batch)
    r.run(timeout=10)
    wait_for(lambda: cluster.committed.get(T0) == 5, what="commit 5")
    # the gap at 2 holds the commit at 2 and redelivers 2,3,4 (3 and 4 again: at-least-once)
    assert deliveries[:2] == [[0, 1, 2, 3, 4], [2, 3, 4]]
    assert cluster.commit_log[:2] == [{T0: 2}, {T0: 5}]
    assert ("seek", T0, 2) in cluster.consumers[0].calls


def test_batch_handler_seek_is_not_overridden_and_skipped_records(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    for i in range(3):
        cluster.produce("t", 0, b"a%d" % i)
        cluster.produce("t", 1, b"b%d" % i)
    handled: list[tuple[int, int]] = []
    rounds: list[int] = []

    def batch(records: list, ctx: BatchContext) -> None:
        rounds.append(len(records))
        for m in records:
            if ctx.skipped(m):
                continue
            if (m.partition, m.offset) == (0, 1) and len(rounds) == 1:
                ctx.seek(T0, 1)  # retry in place: only partition 0 stalls
                continue
            handled.append((m.partition, m.offset))
            ctx.settle(m)

    rec = Recorder()
    r = make(runners, cluster, rec, batch_handler=batch)
    r.run(timeout=10)
    wait_for(lambda: cluster.committed == {T0: 3, T1: 3}, what="both partitions done")
    assert handled[:4] == [(0, 0), (1, 0), (1, 1), (1, 2)]
    assert handled[4:] == [(0, 1), (0, 2)]
    seeks = [c for c in cluster.consumers[0].calls if c[0] == "seek"]
    assert seeks == [("seek", T0, 1)]  # the runner did not add its own seek


def test_settle_outside_the_batch_is_refused(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    cluster.produce("t", 0, b"x")
    errors: list[BaseException] = []

    def tick(ctx: BatchContext) -> None:
        if cluster.consumers and cluster.consumers[0].polls > 2 and not errors:
            try:
                ctx.settle(cluster.logs[T0][0])
            except RunnerStateError as exc:
                errors.append(exc)

    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: None, on_tick=tick)
    r.run(timeout=10)
    wait_for(lambda: bool(errors), what="settle refusal")
    assert "not in this batch" in str(errors[0])


def test_pause_is_reapplied_after_rebalance(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    rec = Recorder()
    seen: list[tuple[int, int]] = []
    r = make(runners, cluster, rec, handler=lambda m: seen.append((m.partition, m.offset)))
    r.run(timeout=10)
    r.pause([T0]).result(timeout=5)
    consumer: FakeConsumer = cluster.consumers[0]
    assert consumer.paused() == {T0} and r.paused() == {T0}
    cluster.produce("t", 0, b"held")
    cluster.produce("t", 1, b"flows")
    wait_for(lambda: (1, 0) in seen, what="partition 1 delivery")
    consumer.rebalance_to({T0, T1})  # the fake forgets pauses, as kafka-python does
    wait_for(lambda: consumer.generation == 2, what="rebalance")
    wait_for(lambda: any(isinstance(e, Pause) and e.reapplied for e in rec.events), what="re-pause")
    assert consumer.paused() == {T0}
    time.sleep(0.1)
    assert (0, 0) not in seen  # still held after the rebalance
    r.resume([T0]).result(timeout=5)
    wait_for(lambda: (0, 0) in seen, what="delivery after resume")
    kinds = rec.kinds()
    assert kinds.count("pause") == 2 and "resume" in kinds
    revoked = [e for e in rec.of(Rebalance) if e.phase == "revoked"]
    assert revoked and revoked[0].partitions == (T0, T1)


def test_pause_before_start_applies_on_assignment(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    cluster.produce("t", 0, b"x")
    seen: list[int] = []
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: seen.append(m.partition))
    fut = r.pause([T0])
    r.run(timeout=10)
    fut.result(timeout=5)
    wait_for(lambda: cluster.consumers[0].paused() == {T0}, what="pause applied")
    time.sleep(0.1)
    assert seen == []


def test_stop_commits_leaves_and_emits_stop_then_disconnect(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    cluster.produce("t", 0, b"x")
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: None)
    r.run(timeout=10)
    wait_for(lambda: cluster.committed.get(T0) == 1, what="commit")
    assert r.stop(timeout=5) is RunnerState.STOPPED
    consumer = cluster.consumers[0]
    assert consumer.closed and ("close", False) in consumer.calls
    kinds = rec.kinds()
    assert kinds[-3:] == ["stop", "rebalance", "disconnect"]
    assert r.stop(timeout=5) is RunnerState.STOPPED  # idempotent
    assert not any(t.name == "offsetlab-runner-r" for t in threading.enumerate())
    assert r.assignment() == frozenset()


def test_stop_from_inside_the_handler(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    for i in range(3):
        cluster.produce("t", 0, b"m%d" % i)
    holder: list[ConsumerRunner] = []
    seen: list[int] = []

    def handler(m: object) -> None:
        seen.append(m.offset)  # type: ignore[attr-defined]
        holder[0].stop()

    rec = Recorder()
    r = make(runners, cluster, rec, handler=handler)
    holder.append(r)
    r.run(timeout=10)
    wait_for(lambda: r.state is RunnerState.STOPPED, what="STOPPED")
    assert seen == [0]  # the rest of the batch was skipped, not settled
    assert cluster.committed == {T0: 1}


def test_join_failure_from_the_client(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    boom = kafka_errors.KafkaTimeoutError("Unable to bootstrap from fake:9092")
    cluster.construct_errors.append(boom)
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: None)
    with pytest.raises(JoinFailed) as info:
        r.run(timeout=10)
    assert info.value.__cause__ is boom and "fake:9092" in str(info.value)
    assert r.state is RunnerState.CRASHED
    crash = rec.of(Crash)[0]
    assert crash.during_join and crash.restart is False  # a join failure is never restarted
    assert rec.kinds() == ["crash"]


def test_join_failure_invalid_topic(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: None, topics=("bad topic",))
    with pytest.raises(JoinFailed) as info:
        r.run(timeout=10)
    assert isinstance(info.value.__cause__, ValueError)
    assert rec.kinds() == ["connect", "crash", "disconnect"]
    assert cluster.consumers[0].closed


def test_join_timeout_stops_the_runner(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    cluster.assign_after_polls = 10**9
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: None)
    with pytest.raises(JoinTimeout):
        r.run(timeout=0.2)
    assert r.state is RunnerState.STOPPED and cluster.consumers[0].closed
    assert isinstance(r.join_handle.exception(), JoinFailed)


def test_crash_after_join_in_poll_follows_policy(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: None)
    r.run(timeout=10)
    cluster.poll_errors.append(kafka_errors.KafkaError("broker went away"))
    wait_for(lambda: len(rec.of(GroupJoin)) == 2, what="rejoin after restart")
    assert rec.of(Crash)[0].restart is True and r.restarts == 1


def test_rebalance_commit_failure_is_not_a_crash(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    cluster.commit_errors.append(kafka_errors.CommitFailedError())
    cluster.produce("t", 0, b"a")
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: None)
    r.run(timeout=10)
    cluster.produce("t", 0, b"b")
    wait_for(lambda: cluster.committed.get(T0) == 2, what="later commit")
    assert rec.of(Crash) == [] and r.state is RunnerState.RUNNING


def test_listener_that_raises_does_not_stop_the_runner(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    cluster.produce("t", 0, b"a")

    def bad_listener(e: LifecycleEvent) -> None:
        raise RuntimeError("listener bug")

    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: None)
    r.add_listener(bad_listener)
    r.run(timeout=10)
    wait_for(lambda: cluster.committed.get(T0) == 1, what="commit despite listener")
    assert r.state is RunnerState.RUNNING and rec.of(Crash) == []


def test_on_tick_runs_on_empty_polls(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    ticks: list[tuple[int, str]] = []
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: None,
             on_tick=lambda ctx: ticks.append((len(ctx.records), threading.current_thread().name)))
    r.run(timeout=10)
    wait_for(lambda: len(ticks) >= 5, what="ticks")
    assert {t for t in ticks} == {(0, "offsetlab-runner-r")}


def test_stop_before_start_and_event_kinds_are_strings(cluster: FakeCluster) -> None:
    r = ConsumerRunner(config(), handler=lambda m: None, consumer_factory=cluster.factory)
    assert r.stop() is RunnerState.STOPPED
    with pytest.raises(RunnerStateError):
        r.start()
    assert cluster.consumers == []
    assert LifecycleKind.GROUP_JOIN == "group_join"


def test_handler_pausing_its_partition_skips_the_rest_of_the_batch(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    for i in range(4):
        cluster.produce("t", 0, b"m%d" % i)
    holder: list[ConsumerRunner] = []
    seen: list[int] = []

    def handler(m: object) -> None:
        seen.append(m.offset)  # type: ignore[attr-defined]
        if m.offset == 1:  # type: ignore[attr-defined]
            holder[0].pause([T0])  # e.g. a breaker opened: on the runner thread, applies at once

    rec = Recorder()
    r = make(runners, cluster, rec, handler=handler)
    holder.append(r)
    r.run(timeout=10)
    wait_for(lambda: cluster.committed.get(T0) == 2, what="commit up to the pause")
    time.sleep(0.1)
    assert seen == [0, 1]  # 2 and 3 were skipped, not handled while paused
    assert ("seek", T0, 2) in cluster.consumers[0].calls
    r.resume([T0]).result(timeout=5)
    wait_for(lambda: cluster.committed.get(T0) == 4, what="the rest after resume")
    assert seen == [0, 1, 2, 3]


def test_pause_after_stop_is_refused(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: None)
    r.run(timeout=10)
    r.stop(timeout=5)
    with pytest.raises(RunnerStateError):
        r.pause([T0]).result(timeout=5)


class Interrupt(BaseException):
    """Stands in for KeyboardInterrupt/SystemExit (not an Exception)."""


def test_base_exception_in_handler_closes_and_never_restarts(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    cluster.produce("t", 0, b"x")

    def handler(m: object) -> None:
        raise Interrupt()

    rec = Recorder()
    r = make(runners, cluster, rec, handler=handler)
    r.run(timeout=10)
    wait_for(lambda: r.state is RunnerState.CRASHED, what="CRASHED")
    assert [c.restart for c in rec.of(Crash)] == [False]
    assert cluster.consumers[0].closed and rec.kinds()[-1] == "disconnect"


def test_lost_partitions_are_reported_as_lost(cluster: FakeCluster, runners: list[ConsumerRunner]) -> None:
    rec = Recorder()
    r = make(runners, cluster, rec, handler=lambda m: None)
    r.run(timeout=10)
    consumer: FakeConsumer = cluster.consumers[0]
    consumer.lose_then_rejoin()
    wait_for(lambda: consumer.generation == 2, what="rejoin")
    wait_for(lambda: len([e for e in rec.of(Rebalance) if e.phase == "assigned"]) == 2,
             what="second assignment event")
    phases = [e.phase for e in rec.of(Rebalance)]
    assert phases == ["assigned", "lost", "assigned"]  # no empty "revoked" after the loss
    assert len(rec.of(GroupJoin)) == 1 and r.assignment() == {T0, T1}
