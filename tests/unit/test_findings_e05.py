"""E05's finders (and the outage finders E05 prints) on hand-made data, each both ways."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from offsetlab.lab.experiments import e05_findings as f5
from offsetlab.lab.experiments import outage_findings as fo
from offsetlab.lab.experiments.e05_window import WindowRun
from offsetlab.lab.findings import assert_flips, flips, spread

# -- fail03 ---------------------------------------------------------------------------------


@flips(f5.deliveries)
def test_deliveries_are_the_records_on_the_topic_and_the_calls_a_second_source() -> None:
    read = {0: [1], 1: [1], 2: [1, 2, 3]}
    agree = f5.deliveries("raw transient", read, {0: 1, 1: 1, 2: 3})
    differ = f5.deliveries("raw transient", {0: [1], 1: [1], 2: [1, 2]}, {0: 1, 1: 1, 2: 3})
    assert agree[0].value == {0: 1, 1: 1, 2: 3}
    assert assert_flips(agree, differ, "raw transient: deliveries per message, read from the topic") == (
        {0: 1, 1: 1, 2: 3}, {0: 1, 1: 1, 2: 2})
    name = "raw transient: handler calls per message == deliveries read from the topic"
    assert assert_flips(agree, differ, name) == (True, False)


@flips(f5.exhausted)
def test_exhausted_needs_attempts_one_to_max_plus_one_on_the_topic_and_in_the_calls() -> None:
    full = f5.exhausted("raw poison", 2, {2: [1, 2, 3, 4, 5, 6]}, {2: 6}, 5)
    short = f5.exhausted("raw poison", 2, {2: [1, 2, 3, 4, 5]}, {2: 7}, 5)
    assert assert_flips(full, short) == ([True, True], [False, False])


@flips(f5.processing_order)
def test_processing_order() -> None:
    assert assert_flips(f5.processing_order("transient", [0, 1, 3, 4, 2]),
                        f5.processing_order("transient", [0, 1, 2, 3, 4])) == (
        [0, 1, 3, 4, 2], [0, 1, 2, 3, 4])


@flips(f5.dead_lettered)
def test_dead_lettered() -> None:
    assert assert_flips(f5.dead_lettered("poison", [2]), f5.dead_lettered("poison", [])) == ([2], [])


@flips(f5.lost)
def test_lost() -> None:
    assert assert_flips(f5.lost("no re-produce", {"lost": [2]}),
                        f5.lost("no re-produce", {"lost": []})) == ([2], [])


@flips(f5.restart_began)
def test_restart_began_at_the_crashed_record_or_the_one_before() -> None:
    at = f5.restart_began("crash, offset+1", [9], [9])
    before = f5.restart_began("crash, offset+1", [9], [8])
    assert assert_flips(at, before) == ([True, False], [False, True])


@flips(f5.lost_duplicated)
def test_lost_duplicated() -> None:
    assert assert_flips(f5.lost_duplicated("crash, offset", {"lost": [], "duplicated": [2]}),
                        f5.lost_duplicated("crash, offset", {"lost": [], "duplicated": []})) == (
        [[], [2]], [[], []])


@flips(f5.bus_outcome)
def test_bus_outcome() -> None:
    ok = {"lost": [], "duplicated": [], "dead-lettered": []}
    assert assert_flips(f5.bus_outcome("transient", ok),
                        f5.bus_outcome("transient", {**ok, "lost": [2]}))[1] == [[2], [], []]


@flips(f5.committed_at_end)
def test_committed_at_end_every_topic() -> None:
    ends = {"main": 7, "main-retry": 5}
    at_end = f5.committed_at_end("bus poison", {"main": 7, "main-retry": 5}, ends,
                                 what="main and retry topic")
    behind = f5.committed_at_end("bus poison", {"main": 7, "main-retry": 4}, ends,
                                 what="main and retry topic")
    assert at_end.name == "bus poison: committed == end of main and retry topic"
    assert assert_flips(at_end, behind) == (True, False)
    assert f5.committed_at_end("raw", {"a": None}, {"a": 3}, what="their topics").name == (
        "raw: main and retrier committed == end of their topics")


@flips(f5.dead_letter_provenance)
def test_dead_letter_provenance() -> None:
    @dataclass
    class P:
        attempt: int
        original_offset: int

    assert assert_flips(f5.dead_letter_provenance([(2, P(6, 2))]),
                        f5.dead_letter_provenance([(2, P(5, 7))])) == ([[6, 2]], [[5, 7]])


# -- the copy-then-commit window ----------------------------------------------------------------
def _window(killed: bool, records: list[tuple[int, int, int]],
            calls: list[tuple[int, int, int, str]]) -> WindowRun:
    return WindowRun(mode="raw", killed=killed, fail_seq=2, n_messages=5, topic="t", group="g",
                     records=records, calls=calls)


ORIGINALS = [(i, i, 1) for i in range(5)]
CONTROL = _window(False, [*ORIGINALS, (5, 2, 2)],
                  [(1, 0, 1, "processed"), (1, 1, 1, "processed"), (1, 2, 1, "failed"),
                   (1, 3, 1, "processed"), (1, 4, 1, "processed"), (1, 2, 2, "processed")])
#: killed after the copy's ack; the restart handled 0..4 again and the second copy too
KILLED = _window(True, [*ORIGINALS, (5, 2, 2), (6, 2, 2)],
                 [(1, 0, 1, "processed"), (1, 1, 1, "processed"), (1, 2, 1, "failed"),
                  (2, 0, 1, "processed"), (2, 1, 1, "processed"), (2, 2, 1, "failed"),
                  (2, 3, 1, "processed"), (2, 4, 1, "processed"), (2, 2, 2, "processed"),
                  (2, 2, 2, "processed")])
#: a kill that landed after the commit would change nothing: like the control
HARMLESS = _window(True, CONTROL.records, CONTROL.calls)


def _runs(killed: WindowRun) -> dict[tuple[str, bool], Any]:
    return {("raw", False): CONTROL, ("raw", True): killed}


@flips(f5.window_copies)
def test_window_copies_count_the_failing_messages_copies_on_the_topic() -> None:
    assert assert_flips(f5.window_copies(_runs(KILLED), "raw"),
                        f5.window_copies(_runs(HARMLESS), "raw")) == ([[2], [2, 2]], [[2], [2]])


@flips(f5.window_processed)
def test_window_processed_counts_successful_calls() -> None:
    assert assert_flips(f5.window_processed(_runs(KILLED), "raw"),
                        f5.window_processed(_runs(HARMLESS), "raw")) == ([1, 2], [1, 1])


@flips(f5.window_others_twice)
def test_window_others_twice() -> None:
    assert assert_flips(f5.window_others_twice(_runs(KILLED), "raw"),
                        f5.window_others_twice(_runs(HARMLESS), "raw")) == ([0, 1], [])


@flips(f5.window_lost)
def test_window_lost() -> None:
    lost = _window(True, KILLED.records, [c for c in KILLED.calls if c[1] != 4])
    assert assert_flips(f5.window_lost(_runs(KILLED), "raw"),
                        f5.window_lost(_runs(lost), "raw")) == ([[], []], [[], [4]])


# -- the outage (shared with E06) ----------------------------------------------------------------
def summary(**rows: dict[str, Any]) -> pd.DataFrame:
    """A hand-made per-repeat summary: pipeline -> columns."""
    return pd.DataFrame.from_dict(rows, orient="index")


def row(**over: Any) -> dict[str, Any]:
    return {"finished": True, "lost": 0, "duplicated": 0, "rebalances": 0, "dead_lettered": 0,
            "keys_out_of_order": 0, **over}


@flips(fo.every_item_accounted)
def test_every_item_accounted_in_every_repeat() -> None:
    ok = [summary(a=row(), b=row())] * 3
    one_short = [*ok[:2], summary(a=row(), b=row(finished=False))]
    assert assert_flips(fo.every_item_accounted(ok), fo.every_item_accounted(one_short)) == (True, False)


@flips(fo.lost_per_pipeline, fo.duplicated_per_pipeline)
def test_lost_and_duplicated_are_summed_over_the_repeats() -> None:
    ok = [summary(a=row(), b=row())] * 2
    bad = [summary(a=row(), b=row(lost=1, duplicated=2)), summary(a=row(), b=row(lost=2))]
    assert assert_flips(fo.lost_per_pipeline(ok), fo.lost_per_pipeline(bad))[1] == {"a": 0, "b": 3}
    assert assert_flips(fo.duplicated_per_pipeline(ok),
                        fo.duplicated_per_pipeline(bad))[1] == {"a": 0, "b": 2}


@flips(fo.healthy_throughput_ratio)
def test_healthy_throughput_ratio_on_medians() -> None:
    blocked = {"bus-retry-topic": spread([1.0, 1.0, 0.9]), "bus-main-topic": spread([0.5, 0.4, 0.6])}
    same = {"bus-retry-topic": spread([1.0, 1.0, 0.9]), "bus-main-topic": spread([0.9, 1.0, 1.0])}
    assert assert_flips(fo.healthy_throughput_ratio(blocked),
                        fo.healthy_throughput_ratio(same)) == (True, False)
    zero = {"bus-retry-topic": spread([1.0]), "bus-main-topic": spread([0.0])}
    assert fo.healthy_throughput_ratio(zero).value is True


@flips(fo.stall_ratio)
def test_stall_ratio_on_medians() -> None:
    blocked = {"bus-main-topic": spread([4.0, 4.1, 3.9]), "bus-retry-topic": spread([0.3, 0.3, 2.5])}
    even = {"bus-main-topic": spread([0.4, 0.5, 3.9]), "bus-retry-topic": spread([0.3, 0.3, 0.3])}
    assert assert_flips(fo.stall_ratio(blocked), fo.stall_ratio(even)) == (True, False)


@flips(fo.retry_topic_out_of_order)
def test_retry_topic_out_of_order_in_the_median_repeat() -> None:
    mostly = [summary(**{"bus-retry-topic": row(keys_out_of_order=n)}) for n in (2, 0, 1)]
    rarely = [summary(**{"bus-retry-topic": row(keys_out_of_order=n)}) for n in (2, 0, 0)]
    assert assert_flips(fo.retry_topic_out_of_order(mostly),
                        fo.retry_topic_out_of_order(rarely)) == (True, False)


@flips(fo.dead_lettered_outage_items)
def test_dead_lettered_outage_items_in_every_repeat() -> None:
    every = [summary(**{"seed-reproduce": row(dead_lettered=n)}) for n in (20, 18, 21)]
    not_every = [summary(**{"seed-reproduce": row(dead_lettered=n)}) for n in (20, 0, 21)]
    assert assert_flips(fo.dead_lettered_outage_items(every),
                        fo.dead_lettered_outage_items(not_every)) == (True, False)


@flips(fo.dead_letter_deliveries)
def test_dead_letter_deliveries_from_the_topics_and_the_calls() -> None:
    read = [{0: [1, 2, 3, 4, 5, 6], 1: [1]}, {4: [1, 2, 3, 4, 5, 6]}]
    calls = [{0: 6, 1: 1}, {4: 6}]
    ok = fo.dead_letter_deliveries("seed-reproduce", read, calls, [[0], [4]])
    odd = fo.dead_letter_deliveries("seed-reproduce", [read[0], {4: [1, 2, 3]}], [calls[0], {4: 7}],
                                    [[0], [4]])
    assert assert_flips(ok, odd) == ([[6], [6]], [[3, 6], [6, 7]])
