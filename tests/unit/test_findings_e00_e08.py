"""E00 and E08's finders come out both ways on hand-made data."""

from __future__ import annotations

from dataclasses import replace

from offsetlab.lab.experiments import e00_smoke as e00
from offsetlab.lab.experiments import e08_findings as e08f
from offsetlab.lab.experiments.e08_end_to_end import FinalState
from offsetlab.lab.findings import assert_flips, flips


@flips(e00.exactly_once)
def test_exactly_once_is_false_for_a_duplicate_or_a_missing_record() -> None:
    sent = [(0, 0), (0, 1), (1, 0)]
    ok = e00.exactly_once(sent, [(1, 0), (0, 0), (0, 1)])
    assert assert_flips(ok, e00.exactly_once(sent, [(0, 0), (0, 1), (1, 0), (0, 1)])) == (True, False)
    assert assert_flips(ok, e00.exactly_once(sent, [(0, 0), (1, 0)])) == (True, False)


@flips(e00.consumed_split)
def test_the_split_is_read_from_what_each_member_consumed() -> None:
    steady = e00.consumed_split([("a", 0), ("b", 1), ("b", 2), ("a", 0)])
    moved = e00.consumed_split([("a", 0), ("a", 1), ("a", 2), ("b", 2)])  # a took over p2's start
    alone = e00.consumed_split([("a", 0), ("a", 1), ("a", 2)])
    assert assert_flips(steady, alone, "members that consumed messages") == (2, 1)
    assert assert_flips(steady, moved, "partitions each member consumed from (sorted counts)") == (
        [1, 2], [1, 3])
    assert assert_flips(steady, moved, "a partition was consumed by two members") == (False, True)


STATE = FinalState(statuses=(("a1", "sent"), ("b1", "received")), sent=("a1",),
                   dead_letters=(("b1", "builtins.ValueError", 1),),
                   breaker_states=("open", "half_open", "closed"), breaker_now="closed",
                   pending_events=0)


@flips(e08f.same_final_state)
def test_a_different_end_state_prints_false_and_names_the_fields() -> None:
    same = e08f.same_final_state(STATE, replace(STATE))
    stuck = replace(STATE, statuses=(("a1", "sent"), ("b1", "checking")),
                    unfinished_steps=("b1 dead-lettered",))
    other = e08f.same_final_state(STATE, stuck)
    assert assert_flips(same, other, "same final state on both buses") == (True, False)
    assert assert_flips(same, other, "final state fields that differ between the buses") == (
        [], ["statuses", "unfinished_steps"])


@flips(e08f.end_state)
def test_end_state_lines_follow_the_state() -> None:
    other = FinalState(statuses=(("a1", "received"),), sent=(), dead_letters=(),
                       breaker_states=(), breaker_now="closed", pending_events=2,
                       unfinished_steps=("a1 sent, a2 not allowed",))
    one, two = e08f.end_state("kafka", STATE), e08f.end_state("kafka", other)
    for a, b in zip(one, two, strict=True):
        assert_flips(a, b)
    assert assert_flips(one, two, "kafka: events left pending on aggregates") == (0, 2)


@flips(e08f.per_bus)
def test_per_bus_counts_follow_the_summary() -> None:
    quiet = {"retries": 4, "calls_while_open": 0, "calls_per_phase": {"down": 2}}
    leaky = {"retries": 6, "calls_while_open": 3, "calls_per_phase": {"down": 5}}
    one, two = e08f.per_bus("kafka", quiet), e08f.per_bus("kafka", leaky)
    for a, b in zip(one, two, strict=True):
        assert_flips(a, b)
    assert assert_flips(one, two, "kafka: dependency calls while the breaker was open") == (0, 3)
