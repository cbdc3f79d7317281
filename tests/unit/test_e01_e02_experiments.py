"""E01/E02 experiment modules: the parts that need no broker (settings, outcome strings, the
matrix table, milestones). The scenarios themselves run in the notebooks under nbval."""

from __future__ import annotations

import pytest
from offsetlab.bus.errors import ConfigError, JoinFailed
from offsetlab.bus.lifecycle import RunnerState
from offsetlab.lab.experiments import e01_rebalance, e01_restart
from offsetlab.lab.experiments import e01_run_blocking as e01
from offsetlab.lab.experiments import e02_errors as e02


def test_e01_settings_validate_keys_and_heartbeat() -> None:
    assert e01.Settings().consumer()["session_timeout_ms"] == 6000
    with pytest.raises(ConfigError, match="n_messages"):
        e01.Settings(n_messages=0)
    with pytest.raises(ConfigError, match="gap_s"):
        e01.Settings(gap_s=-1)
    with pytest.raises(ConfigError, match="heartbeat_interval_ms"):
        e01.Settings(session_timeout_ms=3000, heartbeat_interval_ms=1500)


def test_e01_settled_needs_every_member_disjoint_and_all_partitions() -> None:
    assert e01.settled({"a": [0, 1], "b": [2]}, 3)
    assert not e01.settled({"a": [0, 1, 2], "b": []}, 3)       # one member holds nothing
    assert not e01.settled({"a": [0, 1], "b": [1, 2]}, 3)      # a partition held twice
    assert not e01.settled({"a": [0], "b": [1]}, 3)            # partition 2 unheld


def test_e01_restart_settings_keep_the_two_clocks_apart() -> None:
    s = e01_restart.RestartSettings()
    assert s.consumer() == {"session_timeout_ms": 10000, "heartbeat_interval_ms": 1000,
                            "max_poll_interval_ms": 30000}
    with pytest.raises(ConfigError, match="at least twice"):
        e01_restart.RestartSettings(session_timeout_ms=10000, rebalance_timeout_ms=15000)
    with pytest.raises(ConfigError, match="wait_s"):
        e01_restart.RestartSettings(wait_s=20.0)
    with pytest.raises(ConfigError, match="heartbeat"):
        e01_restart.RestartSettings(session_timeout_ms=2000, heartbeat_interval_ms=1000,
                                    rebalance_timeout_ms=4000)
    with pytest.raises(ValueError, match="kind"):
        e01_restart.restart_once(None, "sticky", s)  # type: ignore[arg-type]


def test_e01_rebalance_settings_and_strategies() -> None:
    assert set(e01_rebalance.STRATEGIES) == {"eager", "cooperative-sticky"}
    assert e01_rebalance.STRATEGIES["cooperative-sticky"].name == "cooperative-sticky"
    with pytest.raises(ConfigError, match="third"):
        e01_rebalance.RebalanceSettings(heartbeat_interval_ms=10000, session_timeout_ms=20000)
    with pytest.raises(ConfigError, match="too slow"):
        e01_rebalance.RebalanceSettings(produce_every_s=0.2)


def test_e01_longest_gap_counts_the_stretch_across_the_window_edges() -> None:
    gap = e01_rebalance._longest_gap
    assert gap([1.0, 1.1, 1.2, 3.5, 3.6], 1.15, 3.0) == 2.3  # 1.2 -> 3.5 overlaps the window
    assert gap([], 1.0, 2.0) == 1.0                          # nothing handled at all
    assert round(gap([0.5, 1.5, 2.5], 1.0, 2.0), 3) == 1.0


def test_e01_raw_member_polls_and_assignment_inside_poll() -> None:
    m = e01.RawMember("raw-1", polls=[(0.0, 0.1), (0.1, 0.2), (0.2, 0.3)], assigned_at=0.25)
    assert m.polls_before_assignment == 2 and m.assigned_inside_poll
    late = e01.RawMember("raw-2", polls=[(0.0, 0.1)], assigned_at=0.5)
    assert not late.assigned_inside_poll
    never = e01.RawMember("raw-3", polls=[(0.0, 0.1)])
    assert never.polls_before_assignment == 1 and not never.assigned_inside_poll


def test_e02_outcome_names_returns_and_raises() -> None:
    assert e02.outcome(None) == "returns None"
    assert e02.outcome({}) == "returns dict"
    assert e02.outcome(RunnerState.STOPPED) == "returns STOPPED"
    assert e02.outcome(error=ValueError("x")) == "raises ValueError"
    failed = JoinFailed("could not join")
    failed.__cause__ = TimeoutError("boom")
    assert e02.outcome(error=failed) == "raises JoinFailed(TimeoutError)"


def test_e02_matrix_table_orders_operations_and_marks_unreached() -> None:
    m = e02.Matrix()
    m.attempt("raw", "s1", "connect", lambda: object())
    ok, exc = m.attempt("raw", "s1", "subscribe", lambda: (_ for _ in ()).throw(ValueError("bad")))
    assert not ok and isinstance(exc, ValueError)
    m.note("raw", "s1", "a note")
    table = m.table()
    assert list(table.columns) == ["connect", "subscribe", "notes"]
    row = table.loc[("raw", "s1")]
    assert row["connect"] == "returns object" and row["subscribe"] == "raises ValueError"
    assert row["notes"] == "a note"
    m.attempt("raw", "s2", "close", lambda: None)
    assert m.table().loc[("raw", "s2")]["connect"] == "-"


def test_e02_settings_and_milestones() -> None:
    with pytest.raises(ConfigError, match="n_messages"):
        e02.Settings(n_messages=2)
    kinds = ["connect", "rebalance", "group_join", "commit", "commit", "crash", "rebalance", "disconnect"]
    assert e02.milestones(kinds) == ["connect", "group_join", "crash", "disconnect"]
    host, port = e02.closed_port().split(":")
    assert host == "127.0.0.1" and int(port) > 0


def test_e02_after_stop_watches_longer_than_the_session_timeout() -> None:
    s = e02.Settings()
    assert s.after_stop_s * 1000 > s.session_timeout_ms
    assert e02.Matrix().stopped == {}
