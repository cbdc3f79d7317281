"""E07/E08 experiment modules without a broker: config validation, E07's summary on a
hand-recorded timeline, and the E08 story on the in-memory bus (deterministic)."""

from __future__ import annotations

import pytest
from offsetlab.bus.errors import ConfigError
from offsetlab.lab.experiments import e07_pause as e07
from offsetlab.lab.experiments import e08_end_to_end as e08
from offsetlab.lab.timeline import Timeline


# -- E07 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides, key", [
    ({"outage_s": 3.0}, "outage_s"),                       # not longer than max poll interval
    ({"heartbeat_interval_ms": 2500}, "heartbeat_interval_ms"),  # > a third of the session
    ({"partitions": 1}, "partitions"),
    ({"messages": 0}, "messages"),
    ({"settle_timeout_s": 0}, "settle_timeout_s"),
])
def test_pause_params_reject_bad_values_naming_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        e07.PauseParams(**overrides)


def test_pause_params_group_settings_are_kafka_python_keywords() -> None:
    from kafka import KafkaConsumer

    settings = e07.PauseParams().group_settings()
    assert set(settings) <= set(KafkaConsumer.DEFAULT_CONFIG)
    assert settings["enable_auto_commit"] is False


def _recorded_result() -> e07.ScenarioResult:
    """A sleep-like run written by hand: the worker drops out, the peer takes partition 1
    over and processes 1@0 again; 0@0 is produced and never processed."""
    tl = Timeline()
    r = e07.ScenarioResult(strategy="hand", params=e07.PauseParams(), timeline=tl,
                           topic="t", group="g", produced=3)
    tl.record("worker", "assigned", topic="t", detail={"partitions": [1]})  # group forming
    r.settled_t = tl.now()
    tl.record("group", "settled")
    for p, o in ((0, 0), (1, 0), (1, 1)):
        tl.record("producer", "produced", topic="t", partition=p, offset=o)
    tl.record("worker", "consumed", topic="t", partition=1, offset=0)
    tl.record("worker", "sleep", phase="start")
    tl.record(e07.listed("worker"), "member", phase="end")
    tl.record("peer", "assigned", topic="t", detail={"partitions": [0, 1]})
    for o in (0, 1):
        tl.record("peer", "processed", topic="t", partition=1, offset=o)
    tl.record("worker", "sleep", phase="end")
    tl.record("worker", "processed", topic="t", partition=1, offset=0)
    tl.record("worker", "commit_failed", detail={"error": "CommitFailedError"})
    tl.record("worker", "lost", topic="t", detail={"partitions": [1]})
    tl.record("worker", "assigned", topic="t", detail={"partitions": [1]})
    tl.record("peer", "assigned", topic="t", detail={"partitions": [0]})
    r.finished_t = tl.now()
    tl.record("peer", "revoked", topic="t", detail={"partitions": [0]})  # leaving: not counted
    r.group_views = [(r.settled_t - 1, "Stable", ("peer", "worker")),
                     ((r.settled_t + r.finished_t) / 2, "PreparingRebalance", ("peer",))]
    r.end_offsets, r.committed = {0: 1, 1: 2}, {0: 1, 1: 2}
    return r


def test_summarize_counts_from_the_timeline() -> None:
    s = e07.summarize(_recorded_result())
    assert s["rebalances"] == 2                 # the peer's two assignments after settling
    assert s["membership_changes"] == 4         # assigned x3 + lost; not the leaving revoke
    assert s["duplicates"] == 1 and s["lost"] == 1
    assert s["processed"] == 3
    assert s["commit_errors"] == ["CommitFailedError"]
    assert s["fewest_members"] == 1
    assert s["worker_gone_after_s"] is not None and s["worker_gone_after_s"] >= 0
    assert s["longest_sleep_s"] is not None and s["longest_pause_s"] is None
    assert s["committed_at_end"] is True


def test_retrying_starts_again_only_on_group_never_settled() -> None:
    calls: list[int] = []

    def flaky(broker: object, params: e07.PauseParams) -> e07.ScenarioResult:
        calls.append(1)
        if len(calls) < 2:
            raise e07.GroupNeverSettled("no group")
        return _recorded_result()

    result = e07.retrying(flaky)(None, e07.PauseParams())  # type: ignore[arg-type]
    assert result.join_retries == 1 and len(calls) == 2

    def broken(broker: object, params: e07.PauseParams) -> e07.ScenarioResult:
        raise RuntimeError("not a join problem")

    with pytest.raises(RuntimeError):
        e07.retrying(broken)(None, e07.PauseParams())  # type: ignore[arg-type]


def test_pause_params_keep_the_third_member_inside_the_outage() -> None:
    e07.PauseParams(outage_s=10.0, rebalance_after_s=2.5, joiner_stays_s=2.0)
    with pytest.raises(ConfigError, match="rebalance_after_s"):
        e07.PauseParams(outage_s=10.0, rebalance_after_s=7.0, joiner_stays_s=2.0)
    with pytest.raises(ConfigError, match="rebalance_after_s"):
        e07.PauseParams(rebalance_after_s=0.0)


@pytest.mark.parametrize("overrides, key", [
    ({"sleep_s": 15.0}, "sleep_s"),                                   # not longer than both
    ({"session_timeout_ms": 10000}, "factor of 2"),                   # 10 s vs 15 s: too close
    ({"heartbeat_interval_ms": 2500}, "heartbeat_interval_ms"),
    ({"rebalance": True, "joiner_after_s": 30.0}, "joiner_after_s"),
])
def test_clock_case_rejects_clocks_it_could_not_tell_apart(overrides: dict, key: str) -> None:
    from offsetlab.lab.experiments.e07_clocks import ClockCase

    with pytest.raises(ConfigError, match=key):
        ClockCase(**{"session_timeout_ms": 6000, "max_poll_interval_ms": 15000, "sleep_s": 22.0,
                     **overrides})


def test_clock_cases_run_both_ways_round_and_name_them() -> None:
    from offsetlab.lab.experiments.e07_clocks import clock_cases

    names = [c.name for c in clock_cases(short_ms=6000, long_ms=15000, sleep_s=22, rebalance=True)]
    assert names == ["rebalancing, session 6 s < max poll 15 s",
                     "rebalancing, session 15 s > max poll 6 s"]


# -- E08 -------------------------------------------------------------------------------------
def test_story_params_reject_a_slow_phase_that_does_not_time_out() -> None:
    with pytest.raises(ConfigError, match="slow_s"):
        e08.StoryParams(slow_s=0.1, dependency_timeout_s=0.2)
    with pytest.raises(ConfigError, match="max_retries"):
        e08.StoryParams(max_retries=1, failure_threshold=2)


def test_memory_story_ends_where_the_use_cases_put_each_request() -> None:
    result = e08.run_on_memory(e08.StoryParams())
    final = result.final
    assert dict(final.statuses) == {"a1": "sent", "a2": "not_allowed", "b1": "received",
                                    "c0": "sent", "c1": "sent", "c2": "sent", "s1": "sent"}
    assert final.dead_letters == (("b1", "builtins.ValueError", 1),)
    assert final.breaker_states == ("open", "half_open", "closed") * 2
    assert final.pending_events == 0
    s = e08.summary(result)
    assert s["calls_while_open"] == 0
    assert s["calls_per_phase"] == {"bad_data": 1, "down": 2, "slow": 2}


def test_memory_story_is_deterministic() -> None:
    a = e08.run_on_memory(e08.StoryParams())
    b = e08.run_on_memory(e08.StoryParams())
    assert a.final == b.final
    assert [r.what for r in a.timeline.rows()] == [r.what for r in b.timeline.rows()]


def test_a_step_that_does_not_complete_is_noted_and_the_story_goes_on(monkeypatch) -> None:
    """A bus that diverges ends with a state to compare (so the finding prints False), not
    with the story's own wait timing out."""
    from offsetlab.lab.experiments import e08_findings
    from offsetlab.lab.experiments.e08_drivers import MemoryDriver

    real = MemoryDriver.wait_until

    def wait_until(self, predicate, *, timeout_s, what):  # type: ignore[no-untyped-def]
        if what == "b1 dead-lettered":
            raise self.timeout_error(f"pretend {what} never happened")
        return real(self, predicate, timeout_s=timeout_s, what=what)

    baseline = e08.run_on_memory(e08.StoryParams()).final
    monkeypatch.setattr(MemoryDriver, "wait_until", wait_until)
    diverged = e08.run_on_memory(e08.StoryParams()).final
    assert diverged.unfinished_steps == ("b1 dead-lettered",)
    assert dict(diverged.statuses)["c2"] == "sent", "the steps after it still ran"
    # b1 met a dependency already healthy again: sent instead of dead-lettered
    assert dict(diverged.statuses)["b1"] == "sent"
    assert e08_findings.state_differences(baseline, diverged) == [
        "dead_letters", "sent", "statuses", "unfinished_steps"]
