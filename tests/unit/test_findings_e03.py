"""E03's finders on hand-made results: each comes out both ways."""

from __future__ import annotations

from e03_builders import scenario_result as _result
from offsetlab.lab.experiments import e03_findings as f
from offsetlab.lab.experiments.e03_scenario import Attempt
from offsetlab.lab.findings import assert_flips, flips

PAST = "raw, commit past the failure"


@flips(f.lost, f.any_lost)
def test_lost_and_any_lost() -> None:
    skipped = _result([0] * 5, [1, 2, 4, 5], {0: 5})
    waiting = _result([0] * 5, [1, 2], {0: 2})
    assert assert_flips(f.lost(PAST, skipped), f.lost(PAST, waiting)) == ([3], [])
    assert assert_flips(f.any_lost(PAST, skipped), f.any_lost(PAST, waiting)) == (True, False)


@flips(f.restart_delivered)
def test_restart_delivered() -> None:
    a = f.restart_delivered(PAST, _result([0] * 5, [], {0: 5}, restart=()))
    b = f.restart_delivered(PAST, _result([0] * 5, [], {0: 2}, restart=(3, 4, 5)))
    assert assert_flips(a, b) == ([], [3, 4, 5])


@flips(f.delivered_after_failure)
def test_delivered_after_failure() -> None:
    first = Attempt(1, "c", (1, 2, 3, 4, 5), (1, 2), (3,), {0: 2})
    back = _result([0] * 5, [], {0: 5}, attempts=[first, Attempt(2, "c", (3, 4, 5), (3, 4, 5), (), {0: 5})])
    only = _result([0] * 5, [], {0: 5}, attempts=[first, Attempt(2, "c", (3,), (3,), (), {0: 3})])
    name = "raw, seek back: delivered after the seek-back"
    assert assert_flips(f.delivered_after_failure(name, back), f.delivered_after_failure(name, only)) == (
        [3, 4, 5], [3])


@flips(f.resumes_after_failed_batch)
def test_resumes_after_failed_batch() -> None:
    gap = _result([0] * 5, [], {0: 5}, attempts=[Attempt(1, "r", (1, 2, 3, 4, 5), (1, 2, 4, 5), (3,), {0: 2})])
    past = _result([0] * 5, [], {0: 5}, attempts=[Attempt(1, "r", (1, 2, 3, 4, 5), (1, 2, 4, 5), (3,), {0: 5})])
    label = "runner, seed's handler"
    assert assert_flips(f.resumes_after_failed_batch(label, gap), f.resumes_after_failed_batch(label, past)) == (
        "p0: 2 -> msg 3", "p0: 5 -> end")


@flips(f.processed_twice)
def test_processed_twice() -> None:
    label = "runner, stop at failure"
    assert assert_flips(f.processed_twice(label, _result([0] * 3, [1, 2, 3], {0: 3})),
                        f.processed_twice(label, _result([0] * 3, [1, 2, 3, 3], {0: 3}))) == ([], [3])


@flips(f.stalled_partitions, f.messages_waiting, f.others_processed_once)
def test_spread_partitions() -> None:
    stalled = _result([0, 2, 1, 1, 0], [1, 2, 5], {0: 2, 2: 1})
    flowing = _result([0, 2, 1, 1, 0], [1, 2, 3, 4, 5, 5], {0: 2, 1: 2, 2: 1})
    assert assert_flips(f.stalled_partitions(3, stalled), f.stalled_partitions(3, flowing)) == (1, 0)
    assert assert_flips(f.messages_waiting(3, stalled), f.messages_waiting(3, flowing)) == ([3, 4], [])
    assert assert_flips(f.others_processed_once(3, stalled), f.others_processed_once(3, flowing)) == (True, False)


@flips(f.retried_after_others)
def test_retried_after_others() -> None:
    kept = _result([0, 2, 1, 1, 0], [1, 2, 5], {0: 2, 2: 1})
    kept.others_done_at, kept.window_s = 10.0, 2.0
    kept.flaky.attempt_times = {3: [9.0, 10.2, 10.4, 10.6]}
    gave_up = _result([0, 2, 1, 1, 0], [1, 2, 5], {0: 2, 2: 1})
    gave_up.others_done_at, gave_up.window_s = 10.0, 2.0
    gave_up.flaky.attempt_times = {3: [9.0, 9.5, 9.9]}  # three tries, all before the others were done
    assert assert_flips(f.retried_after_others(3, kept, 3, 0.1),
                        f.retried_after_others(3, gave_up, 3, 0.1)) == (True, False)
