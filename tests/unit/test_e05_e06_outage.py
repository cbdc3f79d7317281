"""E05/E06 scenario pieces that need no broker: configs, the dependency, the work items,
the summary of a recorded outage."""

from __future__ import annotations

import pytest
from offsetlab.bus.errors import ConfigError
from offsetlab.lab.experiments import e05_main_topic_retry as e05
from offsetlab.lab.experiments import outage
from offsetlab.lab.timeline import Timeline


def test_outage_config_checks_the_window_and_counts() -> None:
    with pytest.raises(ConfigError, match="duration_s"):
        outage.OutageConfig(duration_s=4.0, outage_start_s=2.0, outage_s=3.0)
    with pytest.raises(ConfigError, match="dependent_every"):
        outage.OutageConfig(dependent_every=0)
    with pytest.raises(ConfigError, match="rate_per_s"):
        outage.OutageConfig(rate_per_s=0)


def test_items_round_robin_keys_and_dependent_keys() -> None:
    items = outage.OutageConfig(duration_s=1.0, rate_per_s=8.0, keys=4, dependent_every=2,
                                outage_start_s=0.0, outage_s=0.5).items()
    assert [i.seq for i in items] == list(range(8))
    assert [i.key for i in items[:4]] == ["key-0", "key-1", "key-2", "key-3"]
    assert {i.key for i in items if i.needs_dependency} == {"key-0", "key-2"}
    assert outage.WorkItem.from_bytes(items[3].to_bytes()) == items[3]


def test_dependency_refuses_only_inside_its_window() -> None:
    with outage.Dependency(timeout_s=2.0) as dep:
        assert not dep.down_at(now=0.0)
        dep.schedule(10.0, 20.0)
        assert not dep.down_at(now=9.99) and dep.down_at(now=10.0) and not dep.down_at(now=20.0)
        dep.call()  # the schedule is in the future: the service answers
        assert dep.probe()
        dep.schedule(0.0, float("inf"))
        with pytest.raises(outage.DependencyDown):
            dep.call()
        assert not dep.probe()
        assert (dep.calls, dep.refused, dep.probes, dep.probes_failed) == (2, 1, 2, 1)
        dep.schedule(float("inf"), float("inf"))
        assert dep.probe()


def test_the_probe_knows_only_what_the_wire_says() -> None:
    """A probe to a service that is gone (closed) fails like one that is down: the client
    never reads the schedule."""
    dep = outage.Dependency(timeout_s=0.5)
    dep.close()
    assert not dep.down_at()
    assert not dep.probe()
    with pytest.raises(outage.DependencyDown):
        dep.call()


def test_fail03_config_names_the_bad_key() -> None:
    with pytest.raises(ConfigError, match="commit"):
        e05.Fail03(commit="offset-1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on_exhausted"):
        e05.Fail03(on_exhausted="ignore")  # type: ignore[arg-type]


def _recorded_run() -> outage.OutageRun:
    """A hand-made run: pipeline A keeps up; pipeline B blocks a healthy item for 3 s and
    processes the dependent key out of order; item 3 of B is dead-lettered."""
    now = [0.0]
    tl = Timeline(clock=lambda: now[0])
    config = outage.OutageConfig(duration_s=1.0, rate_per_s=4.0, keys=2, dependent_every=2,
                                 outage_start_s=0.0, outage_s=1.0)
    run = outage.OutageRun(config=config, timeline=tl, pipelines=["A", "B"], items=config.items())
    run.outage_t = (0.0, 1.0)
    run.produce_t = {0: 0.0, 1: 0.25, 2: 0.5, 3: 0.75}
    rec = [("A", 0, "failed", 1, 0.01), ("A", 1, "processed", 1, 0.26), ("A", 2, "failed", 1, 0.51),
           ("A", 3, "processed", 1, 0.76), ("A", 0, "processed", 2, 1.2), ("A", 2, "processed", 2, 1.3),
           ("B", 0, "failed", 1, 0.01), ("B", 1, "processed", 1, 3.25), ("B", 2, "processed", 1, 3.3),
           ("B", 0, "processed", 2, 3.4), ("B", 0, "processed", 3, 3.5)]
    for who, seq, what, attempt, t in sorted(rec, key=lambda r: r[4]):
        now[0] = t
        tl.record(who, what, key=run.items[seq].key, detail={"seq": seq, "attempt": attempt})
    run.dead_letters = {"A": [], "B": [3]}
    run.finished = {"A": True, "B": True}
    return run


def test_summarize_counts_from_the_recorded_rows() -> None:
    s = outage.summarize(_recorded_run())
    assert s.loc["A", "lost"] == 0 and s.loc["B", "lost"] == 0
    assert s.loc["B", "dead_lettered"] == 1
    assert s.loc["B", "duplicated"] == 1          # seq 0 processed twice
    assert s.loc["A", "max_attempts"] == 2
    assert s.loc["A", "healthy_in_outage"] == 1.0  # items 1, 3 on time
    assert s.loc["B", "healthy_in_outage"] == 0.0  # item 1 took 3 s, item 3 never processed
    assert s.loc["A", "keys_out_of_order"] == 0
    assert s.loc["B", "keys_out_of_order"] == 1    # key-0: seq 2 before seq 0


def test_attempt_of_record_reads_either_header() -> None:
    from offsetlab.bus.headers import ATTEMPT
    from offsetlab.lab.experiments.outage_run import attempt_of_record

    assert attempt_of_record(None) == 1
    assert attempt_of_record([(outage.RETRY_COUNT_HEADER, b"2")]) == 3   # the seed's retry count
    assert attempt_of_record([(ATTEMPT, (4).to_bytes(4, "big"))]) == 4    # the adapter's attempt


def test_handler_calls_count_the_recorded_rows() -> None:
    run = _recorded_run()
    assert run.handler_calls("A") == {0: 2, 1: 1, 2: 2, 3: 1}
    assert run.handler_calls("B") == {0: 3, 1: 1, 2: 1}


def test_spreads_per_pipeline_and_repeats_must_be_positive() -> None:
    from offsetlab.lab.experiments.outage_repeats import run_repeats, spreads

    s1, s2 = outage.summarize(_recorded_run()), outage.summarize(_recorded_run())
    stall = spreads([s1, s2], "healthy_stall_max_s")
    assert set(stall) == {"A", "B"}
    assert stall["A"]["values"] == [s1.loc["A", "healthy_stall_max_s"]] * 2
    assert stall["B"]["values"] == []  # B processed no healthy item during the outage: NaN, left out
    with pytest.raises(ValueError, match="repeats"):
        run_repeats(None, lambda d: [], outage.OutageConfig(), 0)  # type: ignore[arg-type]


def test_window_run_reads_copies_and_processed_calls() -> None:
    from offsetlab.lab.experiments.e05_window import WindowRun

    run = WindowRun(mode="raw", killed=True, fail_seq=2, n_messages=3, topic="t", group="g",
                    exit_codes=[-9, 0],
                    records=[(0, 0, 1), (1, 1, 1), (2, 2, 1), (3, 2, 2), (4, 2, 2)],
                    calls=[(1, 0, 1, "processed"), (1, 2, 1, "failed"), (2, 2, 1, "failed"),
                           (2, 2, 2, "processed"), (2, 2, 2, "processed"), (2, 0, 1, "processed")])
    assert run.copies() == [2, 2]
    assert run.processed() == {0: 2, 2: 2}
    s = run.summary()
    assert s["others processed twice"] == [0] and s["failing message processed"] == 2


def test_spread_table_says_none_for_a_pipeline_without_values() -> None:
    """A repeat can leave a column empty for a pipeline (no retried item): shown as none."""
    from offsetlab.lab.experiments import outage as outage_mod

    table = outage_mod.spread_table(
        {"stall": {"a": {"values": [1.0, 2.0], "median": 1.5, "min": 1.0, "max": 2.0},
                   "b": {"values": [], "median": None, "min": None, "max": None}}},
        {"failed": {"a": [0, 1], "b": [2]}})
    assert table.loc["a", "stall"] == "1.50 [1.00-2.00]" and table.loc["b", "stall"] == "none"
    assert table.loc["b", "failed"] == [2]
