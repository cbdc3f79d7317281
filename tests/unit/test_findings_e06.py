"""E06's finders (its raw retry topic's copies, and the outage finders only E06 prints) on
hand-made data, each both ways."""

from __future__ import annotations

from dataclasses import replace

from offsetlab.lab.experiments import e06_findings as f6
from offsetlab.lab.experiments import outage_findings as fo
from offsetlab.lab.experiments.e06_retry_topic import CopyRow
from offsetlab.lab.findings import assert_flips, flips, spread


def copy(attempt: int, *, topic: str = "retry", offset: int = 0, seq: int = 2,
         not_before_after_ms: int | None = 100, reason: str = "retry") -> CopyRow:
    return CopyRow(topic=topic, offset=offset, seq=seq, attempt=attempt, original_topic_is_main=True,
                   original_partition=0, original_offset=2, exception="DependencyDown",
                   not_before_after_ms=not_before_after_ms, reason=reason)


COPIES = [*(copy(a, offset=a - 2) for a in range(2, 7)),
          copy(6, topic="dlt", not_before_after_ms=None, reason="retries exhausted")]


@flips(f6.copies_attempts)
def test_copies_attempts() -> None:
    assert assert_flips(f6.copies_attempts(COPIES), f6.copies_attempts(COPIES[:2])) == (
        [2, 3, 4, 5, 6], [2, 3])


@flips(f6.copies_name_origin)
def test_copies_name_their_first_delivery() -> None:
    wrong = [*COPIES[:-1], replace(COPIES[-1], original_offset=5)]
    assert assert_flips(f6.copies_name_origin(COPIES, {2: 2}),
                        f6.copies_name_origin(wrong, {2: 2})) == (True, False)
    assert f6.copies_name_origin([], {2: 2}).value is False  # no copies: nothing shown


@flips(f6.not_before_after_copy)
def test_not_before_after_the_copy() -> None:
    early = [replace(COPIES[0], not_before_after_ms=0), *COPIES[1:]]
    assert assert_flips(f6.not_before_after_copy(COPIES), f6.not_before_after_copy(early)) == (
        True, False)


@flips(f6.dead_letters)
def test_dead_letters() -> None:
    assert assert_flips(f6.dead_letters(COPIES), f6.dead_letters(COPIES[:-1])) == (
        [[2, 6, "DependencyDown", "retries exhausted"]], [])


@flips(f6.dead_letter_after_max)
def test_dead_letter_after_max_retries_plus_one() -> None:
    assert assert_flips(f6.dead_letter_after_max(COPIES, 5),
                        f6.dead_letter_after_max(COPIES, 4)) == (True, False)


# -- the outage: what only E06 prints -------------------------------------------------------------
@flips(fo.failed_retries_raw)
def test_failed_retries_raw_summed_over_the_repeats() -> None:
    none = {"raw-retrier": [0, 0, 0], "raw-move-back": [0, 0, 0]}
    some = {"raw-retrier": [0, 2, 0], "raw-move-back": [0, 0, 1]}
    assert assert_flips(fo.failed_retries_raw(none), fo.failed_retries_raw(some)) == ([0, 0], [2, 1])


@flips(fo.failed_retries_bus)
def test_failed_retries_bus_in_the_median_repeat() -> None:
    assert assert_flips(fo.failed_retries_bus({"bus-retry-topic": [16, 0, 12]}),
                        fo.failed_retries_bus({"bus-retry-topic": [16, 0, 0]})) == (True, False)
    assert fo.failed_retries_bus({"bus-retry-topic-breaker": [0, 0, 0]},
                                 "bus-retry-topic-breaker").name == (
        "outage: bus-retry-topic-breaker retries that failed during the outage >= 1")


@flips(fo.raw_max_deliveries)
def test_raw_max_deliveries_read_from_the_topics() -> None:
    two = {"raw-retrier": [{0: [1, 2], 1: [1]}], "raw-move-back": [{0: [1, 2]}]}
    three = {"raw-retrier": [{0: [1, 2], 1: [1]}, {5: [1, 2, 3]}], "raw-move-back": [{0: [1, 2]}]}
    assert assert_flips(fo.raw_max_deliveries(two), fo.raw_max_deliveries(three)) == ([2, 2], [3, 2])


@flips(fo.slowest_retried_raw_vs_bus)
def test_slowest_retried_on_medians() -> None:
    faster = {"raw-retrier": spread([4.0, 3.9, 9.0]), "bus-retry-topic": spread([7.6, 7.5, 7.7])}
    slower = {"raw-retrier": spread([8.0, 7.9, 1.0]), "bus-retry-topic": spread([7.6, 7.5, 7.7])}
    assert assert_flips(fo.slowest_retried_raw_vs_bus(faster),
                        fo.slowest_retried_raw_vs_bus(slower)) == (True, False)


@flips(fo.probe_throughput)
def test_probe_throughput_raw_against_the_breaker() -> None:
    paused = {"raw-retrier": spread([1.0, 1.0, 1.0]), "bus-retry-topic-breaker": spread([0.3, 0.35, 0.3])}
    kept = {"raw-retrier": spread([1.0, 1.0, 1.0]), "bus-retry-topic-breaker": spread([0.9, 0.6, 1.0])}
    assert assert_flips(fo.probe_throughput(paused), fo.probe_throughput(kept)) == (True, False)


@flips(fo.retry_topics_out_of_order)
def test_retry_topics_out_of_order() -> None:
    import pandas as pd

    def rep(raw: int, bus: int) -> pd.DataFrame:
        return pd.DataFrame({"keys_out_of_order": {"raw-retrier": raw, "bus-retry-topic": bus}})

    assert assert_flips(fo.retry_topics_out_of_order([rep(2, 2)] * 3),
                        fo.retry_topics_out_of_order([rep(0, 2)] * 3)) == ([True, True], [False, True])
