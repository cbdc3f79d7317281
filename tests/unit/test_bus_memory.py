"""InMemoryBus behaviour beyond the shared scenarios: partitions, groups and rebalances,
pauses (breaker, backoff, not-before), fault injection, misuse."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
from offsetlab.bus.breaker import CircuitBreaker
from offsetlab.bus.errors import BusStateError
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.headers import parse_provenance
from offsetlab.bus.interface import ActivityKind, SubscriptionState
from offsetlab.bus.memory import InMemoryBus, ManualClock
from offsetlab.bus.outcomes import Retry
from offsetlab.bus.retry import Backoff, InPlaceRetry, MainTopicRetry


@dataclass(frozen=True, kw_only=True)
class Msg(Event):
    topic: ClassVar[str] = "msgs"
    n: int
    k: str

    @property
    def key(self) -> str:
        return self.k


def _bus(partitions: int = 3) -> InMemoryBus:
    return InMemoryBus(EventRegistry([Msg]), clock=ManualClock(), default_partitions=partitions)


def _keys_on_distinct_partitions(bus: InMemoryBus) -> tuple[str, str]:
    """Two keys that the partitioner puts on different partitions (found by publishing)."""
    probe = _bus(bus.default_partitions)
    seen: dict[int, str] = {}
    for i in range(50):
        receipt = probe.publish(Msg(n=0, k=f"key-{i}"))
        seen.setdefault(receipt.partition, f"key-{i}")
        if len(seen) >= 2:
            break
    a, b = list(seen.values())[:2]
    return a, b


def test_same_key_same_partition_and_keys_spread() -> None:
    bus = _bus()
    parts = {bus.publish(Msg(n=i, k="same")).partition for i in range(5)}
    assert len(parts) == 1
    spread = {bus.publish(Msg(n=i, k=f"k{i}")).partition for i in range(30)}
    assert len(spread) >= 2
    partition = parts.pop()
    offsets = [r.offset for r in bus.records("msgs") if r.partition == partition]
    assert offsets == list(range(len(offsets)))


def test_commits_are_offset_plus_one_per_partition() -> None:
    bus = _bus()
    receipts = [bus.publish(Msg(n=i, k=f"k{i}")) for i in range(6)]
    sub = bus.subscribe(Msg, lambda e: None, group="g")
    sub.start()
    bus.drain()
    expected: dict[int, int] = {}
    for r in receipts:
        expected[r.partition] = max(expected.get(r.partition, 0), r.offset + 1)
    assert bus.committed("g", "msgs") == expected
    assert bus.lag("g", "msgs") == 0


def test_group_members_split_partitions_and_take_over_on_stop() -> None:
    bus = _bus(partitions=4)
    got: dict[str, list[int]] = {"a": [], "b": []}
    a = bus.subscribe(Msg, lambda e: got["a"].append(e.n), group="g", name="a")
    b = bus.subscribe(Msg, lambda e: got["b"].append(e.n), group="g", name="b")
    a.run()
    b.run()
    assert len(a.assignment) == 2 and len(b.assignment) == 2  # type: ignore[attr-defined]
    assert set(a.assignment).isdisjoint(b.assignment)  # type: ignore[attr-defined]
    for i in range(20):
        bus.publish(Msg(n=i, k=f"k{i}"))
    bus.drain()
    assert sorted(got["a"] + got["b"]) == list(range(20)) and got["a"] and got["b"]
    b.stop()
    assert b.state is SubscriptionState.STOPPED
    assert len(a.assignment) == 4  # type: ignore[attr-defined]
    for i in range(20, 30):
        bus.publish(Msg(n=i, k=f"k{i}"))
    bus.drain()
    assert sorted(got["a"] + got["b"]) == list(range(30))
    kinds = [x.kind for x in bus.activity if x.subscription == "a"]
    assert ActivityKind.JOINED in kinds and kinds.count(ActivityKind.REBALANCED) == 2


def test_in_place_wait_pauses_only_the_failing_partition() -> None:
    bus = _bus()
    slow_key, other_key = _keys_on_distinct_partitions(bus)
    order: list[tuple[float, int]] = []
    start = bus.clock()

    def handler(e: Event) -> Retry | None:
        assert isinstance(e, Msg)
        order.append((bus.clock() - start, e.n))
        if e.n == 1 and sum(1 for _, n in order if n == 1) == 1:
            return Retry(reason="not yet")
        return None

    sub = bus.subscribe(Msg, handler, group="g",
                        retry=InPlaceRetry(backoff=Backoff(initial_s=10, max_s=10)))
    sub.start()
    bus.publish(Msg(n=1, k=slow_key))
    bus.publish(Msg(n=2, k=slow_key))
    bus.publish(Msg(n=3, k=other_key))
    bus.drain()
    assert sorted(n for _, n in order) == [1, 3]  # n=2 waits behind n=1, n=3 did not
    assert list(sub.waiting().values()) == [start + 10]  # type: ignore[attr-defined]
    bus.settle()
    assert sorted(order[:2]) == [(0, 1), (0, 3)]
    assert order[2:] == [(10, 1), (10, 2)]


def test_main_topic_backoff_copy_waits_for_its_not_before() -> None:
    bus = _bus()
    times: list[float] = []
    start = bus.clock()

    def handler(e: Event) -> Retry | None:
        times.append(bus.clock() - start)
        return Retry(reason="again") if len(times) == 1 else None

    bus.subscribe(Msg, handler, group="g",
                  retry=MainTopicRetry(backoff=Backoff(initial_s=4, max_s=4))).start()
    bus.publish(Msg(n=1, k="x"))
    bus.settle()
    assert times == [0, 4]
    assert any(a.kind is ActivityKind.WAITING for a in bus.activity)
    copy = bus.records("msgs")[-1]
    assert parse_provenance(copy.headers).not_before_ms == round((start + 4) * 1000)


def test_retry_delay_from_outcome_is_honoured() -> None:
    bus = _bus()
    times: list[float] = []

    def handler(e: Event) -> Retry | None:
        times.append(bus.clock())
        return Retry(reason="rate limited", delay_s=7) if len(times) == 1 else None

    bus.subscribe(Msg, handler, group="g", retry=InPlaceRetry()).start()
    bus.publish(Msg(n=1, k="x"))
    bus.settle()
    assert times[1] - times[0] == 7


def test_breaker_pauses_survive_a_rebalance_and_resume_through_half_open() -> None:
    bus = _bus()
    alive = {"up": False}
    breaker = CircuitBreaker("dep", failure_threshold=1, success_threshold=1,
                             probe_interval_s=3, alive_check=lambda: alive["up"],
                             clock=bus.clock)
    seen: list[int] = []

    def handler(e: Event) -> None:
        assert isinstance(e, Msg)
        breaker.call(seen.append, e.n)  # the dependency call, through the breaker

    a = bus.subscribe(Msg, handler, group="g", depends_on=[breaker], name="a")
    a.start()
    breaker.force_open("test")
    for i in range(6):
        bus.publish(Msg(n=i, k=f"k{i}"))
    bus.drain()
    assert seen == []
    b = bus.subscribe(Msg, handler, group="g", depends_on=[breaker], name="b")
    b.start()  # a rebalance: Kafka forgets pauses; both must pause again
    bus.drain()
    assert seen == []
    repaused = [x for x in bus.activity if x.kind is ActivityKind.PAUSED and x.subscription == "a"]
    assert len(repaused) == 2 and "re-paused after rebalance" in repaused[1].detail
    bus.clock.advance(10)  # type: ignore[attr-defined]
    bus.drain()  # probe due, but the dependency is still down
    assert seen == [] and breaker.probes == 1
    alive["up"] = True
    bus.settle()
    assert sorted(seen) == list(range(6))
    assert [t.state.value for t in breaker.transitions] == ["open", "half_open", "closed"]
    breaker_rows = [x.detail for x in bus.activity if x.kind is ActivityKind.BREAKER]
    assert len(breaker_rows) == 3 and "open -> half_open" in breaker_rows[1]


def test_failed_reproduce_is_not_committed_and_is_redelivered() -> None:
    bus = _bus()
    calls: list[float] = []

    def handler(e: Event) -> Retry | None:
        calls.append(bus.clock())
        return Retry(reason="x") if len(calls) <= 1 else None

    bus.subscribe(Msg, handler, group="g", retry=MainTopicRetry()).start()
    bus.publish(Msg(n=1, k="x"))
    bus.fail_next(1, producer="reproduce")
    bus.settle()
    assert len(calls) == 2  # retry asked, copy not written: same record again 1 s later
    assert calls[1] - calls[0] == 1.0
    assert len(bus.records("msgs")) == 1 and bus.committed("g", "msgs") != {}
    failed = [a for a in bus.activity if a.kind is ActivityKind.PUBLISH_FAILED]
    assert len(failed) == 1 and "not committed" in failed[0].detail


def test_handler_returning_garbage_is_fatal() -> None:
    bus = _bus()
    bus.subscribe(Msg, lambda e: "done", group="g").start()  # type: ignore[arg-type,return-value]
    bus.publish(Msg(n=1, k="x"))
    bus.settle()
    [dead] = bus.records("msgs-dlt")
    assert parse_provenance(dead.headers).exception_fqcn == "builtins.TypeError"


def test_misuse_raises_bus_state_error() -> None:
    bus = _bus()
    sub = bus.subscribe(Msg, lambda e: bus.drain(), group="g")
    sub.start()
    bus.publish(Msg(n=1, k="x"))
    bus.settle()
    [dead] = bus.records("msgs-dlt")  # drain() from a handler raised, classified, retried
    assert "BusStateError" in (parse_provenance(dead.headers).exception_fqcn or "")
    sub.stop()
    with pytest.raises(BusStateError, match="was stopped"):
        sub.start()
    bus.close()
    with pytest.raises(BusStateError, match="closed"):
        bus.publish(Msg(n=2, k="x"))
    with pytest.raises(BusStateError, match="closed"):
        bus.subscribe(Msg, lambda e: None, group="g")
    real_clock_bus = InMemoryBus(EventRegistry([Msg]), clock=lambda: 0.0)
    with pytest.raises(BusStateError, match="ManualClock"):
        real_clock_bus.settle()


def test_drain_stops_a_loop_that_never_settles() -> None:
    bus = _bus()
    bus.subscribe(Msg, lambda e: Retry(reason="forever", delay_s=0), group="g",
                  retry=InPlaceRetry(max_retries=10**6)).start()
    bus.publish(Msg(n=1, k="x"))
    with pytest.raises(BusStateError, match="without settling"):
        bus.drain(max_deliveries=50)


def test_subscription_spec_validation() -> None:
    from offsetlab.bus.errors import ConfigError

    bus = _bus()
    with pytest.raises(ConfigError, match="group"):
        bus.subscribe(Msg, lambda e: None, group="")
    with pytest.raises(ConfigError, match="callable"):
        bus.subscribe(Msg, "handler", group="g")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Event subclass or a topic"):
        bus.subscribe(42, lambda e: None, group="g")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="InPlaceRetry"):
        bus.subscribe(Msg, lambda e: None, group="g", retry="main")  # type: ignore[arg-type]
