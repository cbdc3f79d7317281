"""The consumer runner's transactional mode on the fake consumer and a fake transaction
client: a batch is one transaction (begin before the handler, offsets committed with it, no
consumer commit); an aborted transaction seeks the whole batch back; a fenced producer ends
the runner without a restart. (The real producer: tests/integration/test_kafka_bus_transactions.py.)"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from fakes_consumer import FakeCluster
from kafka.structs import TopicPartition
from offsetlab.bus.config import CrashPolicy, RunnerConfig
from offsetlab.bus.errors import TransactionAborted, TransactionFenced
from offsetlab.bus.lifecycle import Commit, Crash, LifecycleEvent, RunnerState
from offsetlab.bus.runner import BatchContext, ConsumerRunner
from test_runner import wait_for

pytestmark = pytest.mark.timeout(30)

T0 = TopicPartition("t", 0)


class FakeTransaction:
    """Records begin/commit/abort; ``fail`` holds what each next commit raises (None: ok)."""

    transactional_id = "fake.g"

    def __init__(self, fail: list[BaseException | None] | None = None) -> None:
        self.log: list[tuple[str, Any]] = []
        self.open = False
        self.fail = list(fail or [])
        self.metadata: list[Any] = []

    def begin(self) -> None:
        assert not self.open, "begin with a transaction open"
        self.open = True
        self.log.append(("begin", None))

    def in_transaction(self) -> bool:
        return self.open

    def commit(self, offsets: Mapping[Any, int], group_metadata: Any) -> None:
        assert self.open
        self.open = False
        self.metadata.append(group_metadata)
        error = self.fail.pop(0) if self.fail else None
        self.log.append(("commit" if error is None else "aborted",
                         {(tp[0], tp[1]): off for tp, off in offsets.items()}))
        if error is not None:
            raise error

    def abort(self) -> None:
        self.open = False
        self.log.append(("abort", None))

    def close(self, timeout_s: float = 10.0) -> None:
        self.log.append(("close", None))


@pytest.fixture
def runners() -> Iterator[list[ConsumerRunner]]:
    made: list[ConsumerRunner] = []
    yield made
    for r in made:
        r.stop(timeout=10)


def _runner(cluster: FakeCluster, txn: FakeTransaction, batch: Any,
            events: list[LifecycleEvent]) -> ConsumerRunner:
    cfg = RunnerConfig(bootstrap_servers="fake:9092", group_id="g", topics=("t",), name="r",
                       poll_timeout_ms=10, join_poll_timeout_ms=5,
                       crash_policy=CrashPolicy(backoff_s=0.0, max_backoff_s=0.0))
    return ConsumerRunner(cfg, batch_handler=batch, consumer_factory=cluster.factory,
                          listeners=[events.append], transaction=txn)  # type: ignore[arg-type]


def test_a_batch_is_one_transaction_and_the_consumer_never_commits(
        runners: list[ConsumerRunner]) -> None:
    cluster = FakeCluster({"t": 1})
    for i in range(3):
        cluster.produce("t", 0, b"m%d" % i)
    txn = FakeTransaction()
    seen_open: list[bool] = []

    def batch(records: list, ctx: BatchContext) -> None:
        seen_open.append(txn.open)
        for m in records:
            ctx.settle(m)

    events: list[LifecycleEvent] = []
    r = _runner(cluster, txn, batch, events)
    runners.append(r)
    r.run(timeout=10)
    wait_for(lambda: ("commit", {("t", 0): 3}) in txn.log, what="the transactional commit")
    assert seen_open == [True]
    assert cluster.commit_log == [], "offsets go with the transaction, not a consumer commit"
    # the group metadata the batch was fetched under goes with its offsets
    assert [(m.generation_id, m.member_id) for m in txn.metadata] == [(1, "fake-member-1")]
    assert [e.offsets for e in events if isinstance(e, Commit)] == [{T0: 3}]


def test_an_aborted_transaction_delivers_the_whole_batch_again(
        runners: list[ConsumerRunner]) -> None:
    cluster = FakeCluster({"t": 1})
    for i in range(4):
        cluster.produce("t", 0, b"m%d" % i)
    txn = FakeTransaction(fail=[TransactionAborted("broker said no")])
    deliveries: list[list[int]] = []

    def batch(records: list, ctx: BatchContext) -> None:
        deliveries.append([m.offset for m in records])
        for m in records:
            ctx.settle(m)

    events: list[LifecycleEvent] = []
    r = _runner(cluster, txn, batch, events)
    runners.append(r)
    r.run(timeout=10)
    wait_for(lambda: ("commit", {("t", 0): 4}) in txn.log, what="the second commit")
    assert deliveries[:2] == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert ("seek", T0, 0) in cluster.consumers[0].calls
    assert [e.offsets for e in events if isinstance(e, Commit)] == [{T0: 4}]
    assert not any(isinstance(e, Crash) for e in events), "an abort is not a crash"


def test_a_fenced_producer_ends_the_runner_without_a_restart(
        runners: list[ConsumerRunner]) -> None:
    cluster = FakeCluster({"t": 1})
    cluster.produce("t", 0, b"m0")
    txn = FakeTransaction()

    def batch(records: list, ctx: BatchContext) -> None:
        raise TransactionFenced("a replacement took the id")

    events: list[LifecycleEvent] = []
    r = _runner(cluster, txn, batch, events)
    runners.append(r)
    r.run(timeout=10)
    wait_for(lambda: r.state is RunnerState.CRASHED, what="CRASHED")
    crashes = [e for e in events if isinstance(e, Crash)]
    assert len(crashes) == 1 and crashes[0].restart is False
    assert len(cluster.consumers) == 1, "no second consumer: a zombie must not come back"


def test_a_plain_error_still_restarts_in_transactional_mode(
        runners: list[ConsumerRunner]) -> None:
    """The flip side of the fenced test: the crash policy still restarts other errors."""
    cluster = FakeCluster({"t": 1})
    cluster.produce("t", 0, b"m0")
    txn = FakeTransaction()
    calls: list[int] = []

    def batch(records: list, ctx: BatchContext) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("dependency down")
        for m in records:
            ctx.settle(m)

    events: list[LifecycleEvent] = []
    r = _runner(cluster, txn, batch, events)
    runners.append(r)
    r.run(timeout=10)
    wait_for(lambda: ("commit", {("t", 0): 1}) in txn.log, what="the commit after the restart")
    crashes = [e for e in events if isinstance(e, Crash)]
    assert len(crashes) == 1 and crashes[0].restart is True
    assert len(cluster.consumers) == 2


def test_offsets_of_a_dropped_member_are_never_sent() -> None:
    """kafka-python resets a member the group dropped to generation -1 / no member id, which
    the broker would accept without a membership check: the producer refuses it."""
    from kafka.errors import CommitFailedError
    from kafka.structs import ConsumerGroupMetadata
    from offsetlab.bus.transports.kafka_python.transactions import TransactionalProducer

    check = TransactionalProducer._check_member
    check(ConsumerGroupMetadata(group_id="g", generation_id=3, member_id="m-1"))
    for generation, member in ((-1, ""), (3, ""), (-1, "m-1")):
        with pytest.raises(CommitFailedError, match="not a group member"):
            check(ConsumerGroupMetadata(group_id="g", generation_id=generation,
                                        member_id=member))
