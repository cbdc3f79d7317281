"""E01's finders on hand-made data: each comes out both ways (offsetlab.lab.findings.flips)."""

from __future__ import annotations

import pandas as pd
import pytest
from offsetlab.lab.experiments import e01_findings as f1
from offsetlab.lab.experiments import e01_findings_groups as f2
from offsetlab.lab.experiments import e01_rebalance as reb
from offsetlab.lab.experiments.e01_run_blocking import RawMember
from offsetlab.lab.findings import assert_flips, flips


def member(name: str, *, saw: bool = False, polls=((0.0, 0.1), (0.1, 0.2)), at: float | None = 0.15):
    return RawMember(name, subscribe_saw_assignment=saw, polls=list(polls), assigned_at=at)


@flips(f1.raw_subscribe_unassigned)
def test_raw_subscribe_unassigned() -> None:
    a = f1.raw_subscribe_unassigned([member("raw-1", saw=True), member("raw-2")])
    b = f1.raw_subscribe_unassigned([member("raw-1"), member("raw-2")])
    assert assert_flips(a, b) == (False, True)


@flips(f1.raw_assigned_inside_poll)
def test_raw_assigned_inside_poll() -> None:
    between = member("raw-2", polls=[(0.0, 0.1), (0.2, 0.3)], at=0.15)  # assigned between polls
    a = f1.raw_assigned_inside_poll([member("raw-1"), between])
    b = f1.raw_assigned_inside_poll([member("raw-1"), member("raw-2")])
    assert assert_flips(a, b) == (False, True)


@flips(f1.consumed_exactly_once)
def test_consumed_exactly_once() -> None:
    twice = pd.DataFrame({"consumed": [1, 2, 1]})
    once = pd.DataFrame({"consumed": [1, 1, 1]})
    missing = pd.DataFrame({"consumed": [1, 1]})
    assert assert_flips(f1.consumed_exactly_once("raw", twice, 3),
                        f1.consumed_exactly_once("raw", once, 3)) == (False, True)
    assert f1.consumed_exactly_once("runner", missing, 3).value is False
    assert f1.consumed_exactly_once("runner", once, 3).name == "runner: every message consumed exactly once"


@flips(f1.start_returned_before_join)
def test_start_returned_before_join() -> None:
    assert assert_flips(f1.start_returned_before_join(10.5, 10.2),
                        f1.start_returned_before_join(10.0, 10.9)) == (False, True)


@flips(f1.run_returned_at_join)
def test_run_returned_at_join_on_the_median() -> None:
    after_consumption = f1.run_returned_at_join([1200.0, 1400.0, 30.0])  # median 1200 ms
    at_join = f1.run_returned_at_join([20.0, 700.0, 12.0])              # one slow repeat
    assert assert_flips(after_consumption, at_join) == (False, True)


@flips(f1.together_joined)
def test_together_joined_two_delays_or_not() -> None:
    one_delay = f1.together_joined(3000, [3.1, 3.2, 3.15], 3000)
    two_delays = f1.together_joined(3000, [6.1, 6.2, 6.3], 3000)
    assert assert_flips(one_delay, two_delays) == (False, True)
    assert two_delays.name == "delay 3000 ms: two members starting together waited at least 1.5 x 3000 ms"
    quick = f1.together_joined(0, [0.2, 3.6, 0.3], 3000)      # one abandoned join, restarted
    held = f1.together_joined(0, [6.0, 6.1, 0.2], 3000)
    assert assert_flips(quick, held) == (False, True)
    assert quick.name == "delay 0 ms: two members starting together waited at least 1.5 x 3000 ms"


@flips(f1.late_member_joined)
def test_late_member_joined() -> None:
    waited = f1.late_member_joined(3000, [3.2, 3.4, 0.4], 1000)
    quick = f1.late_member_joined(3000, [0.4, 0.5, 3.4], 1000)
    assert assert_flips(waited, quick) == (False, True)
    with pytest.raises(ValueError, match="too close"):
        f1.late_member_joined(1500, [0.4], 1000)


def restart_row(since_kill: float, before: int = 1, after: int = 2, logged: int | None = 1) -> dict:
    return {"since_kill_s": since_kill, "generation_before": before, "generation_after": after,
            "rebalances_logged": logged}


@flips(f2.restart_waited_for)
def test_restart_waited_for_each_clock() -> None:
    def waited(values: list[float]) -> str:
        return f2.restart_waited_for("dynamic", [restart_row(v) for v in values], 10000, 30000).value
    assert waited([0.2, 0.3, 9.9]) == "nothing"
    assert waited([9.8, 9.9, 0.3]) == "the session timeout"
    assert waited([29.9, 30.1, 9.0]) == "the rebalance timeout"
    assert assert_flips(f2.restart_waited_for("static", [restart_row(0.2)], 10000, 30000),
                        f2.restart_waited_for("static", [restart_row(9.9)], 10000, 30000)) == (
        "nothing", "the session timeout")


def reasons_row(*reasons: str) -> dict:
    return {"since_kill_s": 0.2, "rebalance_reasons": list(reasons)}


@flips(f2.restart_admitted_by_rebalance)
def test_restart_admitted_by_rebalance_reads_the_reasons() -> None:
    own_rejoin = "Leader e01-instance-0-1 re-joining group during Stable; client reason: not provided"
    added = "Adding new member e01-restarted-dynamic-1 with group instance id null; client reason: x"
    static = f2.restart_admitted_by_rebalance("static", [reasons_row(), reasons_row(own_rejoin),
                                                         reasons_row(added)])
    dynamic = f2.restart_admitted_by_rebalance("static", [reasons_row(added), reasons_row(added),
                                                          {"rebalance_reasons": None}])
    assert assert_flips(static, dynamic) == (False, True)
    assert f2.restart_admitted_by_rebalance("static", [{"rebalance_reasons": None}]).value is False


def summary(revoked: tuple[int, int], stops: tuple[float, float], twice: int = 0) -> dict:
    return {"members": {"A": {"revoked": list(range(revoked[0])), "held_before": [0, 1, 2],
                              "longest_stop_s": stops[0], "steady_gap_s": 0.1},
                        "B": {"revoked": list(range(revoked[1])), "held_before": [3, 4, 5],
                              "longest_stop_s": stops[1], "steady_gap_s": 0.1}},
            "handled_twice": [(0, i) for i in range(twice)], "handled": 100}


@flips(f2.revoked_per_member)
def test_revoked_per_member() -> None:
    eager = f2.revoked_per_member("x", [summary((3, 3), (0.1, 0.1)), summary((3, 3), (0.1, 0.1))])
    coop = f2.revoked_per_member("x", [summary((1, 1), (2.0, 2.0)), summary((1, 0), (2.0, 2.0))])
    assert assert_flips(eager, coop) == ([3], [0, 1])


@flips(f2.stopped_during_rebalance)
def test_stopped_during_rebalance_in_every_repeat() -> None:
    some = f2.stopped_during_rebalance("x", [summary((3, 3), (2.4, 0.2)), summary((3, 3), (0.1, 2.0)),
                                             summary((3, 3), (0.15, 0.1))], 2000)
    every = f2.stopped_during_rebalance("x", [summary((1, 1), (2.0, 0.1)), summary((1, 1), (0.1, 1.1)),
                                              summary((1, 1), (2.1, 2.1))], 2000)
    assert assert_flips(some, every) == (False, True)
    assert some.name == "x: the existing members stopped handling messages in every repeat of the rebalance"


@flips(f2.handled_twice)
def test_handled_twice_adds_up_repeats() -> None:
    none = f2.handled_twice("eager", [summary((3, 3), (0.1, 0.1)), summary((3, 3), (0.1, 0.1))])
    some = f2.handled_twice("eager", [summary((3, 3), (0.1, 0.1), twice=2), summary((3, 3), (0.1, 0.1), twice=1)])
    assert assert_flips(none, some) == (0, 3)


@flips(f2.rebalance_rounds)
def test_rebalance_rounds() -> None:
    one = f2.rebalance_rounds("eager", [{"generations_after_join": 2}, {"generations_after_join": 1}])
    two = f2.rebalance_rounds("eager", [{"generations_after_join": 2}, {"generations_after_join": 3},
                                        {"generations_after_join": None}])
    assert assert_flips(one, two) == (1, 2)


# -- the data the group finders judge, read back from hand-made timelines --------------------
def row(t: float, who: str, what: str, partitions=None, partition=None, offset=None) -> dict:
    return {"t": t, "who": who, "what": what, "partition": partition, "offset": offset,
            "detail": None if partitions is None else {"partitions": list(partitions)}}


def handled(who: str, times, partition: int, first_offset: int = 0) -> list[dict]:
    return [row(t, who, "handled", partition=partition, offset=first_offset + i)
            for i, t in enumerate(times)]


def test_summarize_reads_revocations_stops_and_duplicates() -> None:
    steady = [round(0.1 * i, 2) for i in range(10, 30)]       # 1.0 .. 2.9 s
    rows = [row(0.5, "A", "assigned", [0, 1, 2]), row(0.5, "B", "assigned", [3, 4, 5]),
            *handled("A", steady, 0), *handled("B", steady, 3),
            row(3.0, "C", "subscribe"),
            *handled("A", [3.1, 3.2], 0, 20),
            row(3.3, "A", "revoked", [2]),                      # cooperative: one partition
            *handled("A", [5.4, 5.5], 0, 22),                   # stopped 3.2 -> 5.4
            *handled("B", [3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0, 4.1, 4.2, 4.3, 4.4, 4.5,
                           4.6, 4.7, 4.8, 4.9, 5.0, 5.1, 5.2, 5.3], 3, 20),
            row(3.3, "B", "revoked", []),
            row(3.4, "C", "assigned", []),
            row(5.3, "C", "assigned", [2]),
            *handled("C", [5.4], 0, 22)]                        # offset 22 of partition 0 again
    out = reb.summarize(rows, steady_s=2.0)
    assert out["rebalance"] == (3.0, 5.3)
    assert out["members"]["A"]["revoked"] == [2] and out["members"]["A"]["held_before"] == [0, 1, 2]
    assert out["members"]["A"]["longest_stop_s"] == pytest.approx(2.2)
    assert out["members"]["B"]["longest_stop_s"] == pytest.approx(0.2)  # 2.9 -> 3.1 overlaps 3.0
    assert out["members"]["B"]["revoked"] == []
    assert out["handled_twice"] == [(0, 22)]
    stopped = f2.stopped_during_rebalance("cooperative-sticky", [out], 2000)
    assert stopped.value is True


def test_broker_log_counts_only_that_group() -> None:
    from offsetlab.lab.experiments.e01_restart import rebalance_reasons, rebalances_logged
    log = ("x Preparing to rebalance group g-1 in state PreparingRebalance with old generation 1 "
           "(reason: Adding new member m with group instance id null).\n"
           "x Preparing to rebalance group g-10 in state PreparingRebalance with old generation 0 "
           "(reason: other).\n"
           "x Stabilized group g-1 generation 2 with 1 members.\n")
    assert rebalances_logged(log, "g-1") == 1
    assert rebalance_reasons(log, "g-1") == ["Adding new member m with group instance id null"]
    assert reb.generations_logged(log, "g-1") == 1 and reb.generations_logged(log, "g-10") == 0
