"""E07's finders on hand-made data, each coming out both ways (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from offsetlab.lab.broker_log import group_events, parse_line
from offsetlab.lab.experiments import e07_findings as ff
from offsetlab.lab.experiments.e07_clocks import ClockCase, ClockRun
from offsetlab.lab.experiments.e07_core import PauseParams, ScenarioResult
from offsetlab.lab.findings import assert_flips, flips
from offsetlab.lab.timeline import Timeline


# -- the strategies side by side --------------------------------------------------------------
def _row(**over: Any) -> dict[str, Any]:
    row = {"rebalances": 0, "fewest_members": 2, "duplicates": 0, "lost": 0, "commit_errors": [],
           "commit_failed": 0, "committed_at_end": True, "max_attempts": 2}
    return {**row, **over}


@flips(ff.rebalanced)
def test_rebalanced_compares_the_median() -> None:
    calm = [_row(), _row(rebalances=2), _row()]
    moved = [_row(rebalances=2), _row(rebalances=1), _row()]
    assert assert_flips(ff.rebalanced("s", calm), ff.rebalanced("s", moved)) == (False, True)


@flips(ff.fewest_members)
def test_fewest_members_over_every_repeat() -> None:
    assert assert_flips(ff.fewest_members("s", [_row(), _row()]),
                        ff.fewest_members("s", [_row(), _row(fewest_members=1)])) == (2, 1)


@flips(ff.processed_twice)
def test_processed_twice_compares_the_median() -> None:
    once = [_row(duplicates=1), _row(), _row()]
    twice = [_row(duplicates=1), _row(duplicates=2), _row()]
    assert assert_flips(ff.processed_twice("s", once), ff.processed_twice("s", twice)) == (False, True)


@flips(ff.lost)
def test_lost_sums_the_repeats() -> None:
    assert assert_flips(ff.lost("s", [_row(), _row()]), ff.lost("s", [_row(), _row(lost=1)])) == (0, 1)


@flips(ff.commits_refused)
def test_commits_refused_lists_error_classes() -> None:
    refused = [_row(commit_errors=["CommitFailedError"], commit_failed=1), _row()]
    assert assert_flips(ff.commits_refused("s", [_row()]), ff.commits_refused("s", refused)) == (
        [], ["CommitFailedError"])


@flips(ff.committed_at_end)
def test_committed_at_end_in_every_repeat() -> None:
    assert assert_flips(ff.committed_at_end("s", [_row(), _row()]),
                        ff.committed_at_end("s", [_row(), _row(committed_at_end=False)])) == (True, False)


# -- which clock removed the sleeping worker (hand-made broker log lines) -----------------------
T0 = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC).timestamp()
GROUP = "e07-clock-group-1"


def _at(s: float) -> str:
    return datetime.fromtimestamp(T0 + s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _line(s: float, text: str) -> str:
    return (f"{_at(s)} [group-coordinator-event-processor-1] INFO "
            f"org.apache.kafka.coordinator.group.GroupMetadataManager - [GroupCoordinator id=1 "
            f"topic=__consumer_offsets partition=0] {text}")


def leave(s: float, member: str = "worker-1a2b") -> str:
    return _line(s, f"[Group {GROUP}] Member {member} has left group through explicit "
                    "`LeaveGroup` request; client reason: not provided")


def expired(s: float, member: str = "worker-1a2b") -> str:
    return _line(s, f"Member {member} in group {GROUP} has failed, removing it from the group.")


def join_timeout(s: float) -> str:
    return _line(s, f"Group {GROUP} removed dynamic members who haven't joined: [worker-1a2b]")


CASE = ClockCase(session_timeout_ms=6000, max_poll_interval_ms=15000, sleep_s=22)


def _run(*lines: str, case: ClockCase = CASE) -> ClockRun:
    run = ClockRun(case=case, group=GROUP, topic="t", sleep_start=T0, sleep_end=T0 + case.sleep_s)
    run.events = group_events(lines, GROUP)
    return run


def test_broker_log_lines_parse_into_group_events() -> None:
    (e,) = parse_line(leave(15.5))
    assert (e.kind, e.group, e.member, e.reason) == ("leave_group", GROUP, "worker-1a2b", "not provided")
    assert abs(e.at - (T0 + 15.5)) < 1e-3
    assert parse_line(expired(6.1))[0].kind == "heartbeat_expired"
    two = _line(3, f"Group {GROUP} removed dynamic members who haven't joined: [worker-1, joiner-2]")
    assert [(e.kind, e.member) for e in parse_line(two)] == [("join_timeout", "worker-1"),
                                                             ("join_timeout", "joiner-2")]
    rebalance = _line(4, f"Preparing to rebalance group {GROUP} in state PreparingRebalance with old "
                         f"generation 2 (reason: removing member worker-1 on heartbeat expiration.).")
    assert parse_line(rebalance)[0].reason == "removing member worker-1 on heartbeat expiration."
    assert parse_line("1234 [main] INFO kafka.Kafka - starting") == []
    relative = "27760 [x] INFO GroupMetadataManager - [Group g] Member m-1 has left group through " \
               "explicit `LeaveGroup` request; client reason: not provided"
    assert parse_line(relative)[0].at is None  # the default slf4j-simple stamp: no wall clock


@flips(ff.removed_by)
def test_removed_by_reads_the_clock_from_the_broker_log() -> None:
    name = "sleeping, session 6 s < max poll 15 s"
    by_poll = ff.removed_by(name, [_run(leave(15.6))])
    by_session = ff.removed_by(name, [_run(expired(6.2))])
    not_removed = ff.removed_by(name, [_run(leave(23.0))])  # close() after the sleep: not counted
    assert assert_flips(by_poll, by_session) == ("max poll interval", "session timeout")
    assert assert_flips(by_poll, not_removed) == ("max poll interval", "not removed")
    assert ff.removed_by(name, [_run(join_timeout(18))]).value == "max poll interval"
    assert ff.removed_by(name, [_run(leave(15.6, member="joiner-9"))]).value == "not removed"
    mixed = ff.removed_by(name, [_run(leave(15.6)), _run(expired(6.2))])
    assert mixed.value == "max poll interval / session timeout"  # repeats that differ say so
    # a line whose time fits no clock names none: a LeaveGroup 8 s in is not the 15 s poll timer
    assert ff.removed_by(name, [_run(leave(8.0))]).value == "leave_group at an unexplained time"
    assert ff.removed_by(name, [_run(expired(12.0))]).value == "heartbeat_expired at an unexplained time"
    # the clocks count from the last poll / heartbeat, a little before the sleep began
    assert ff.removed_by(name, [_run(leave(14.95))]).value == "max poll interval"
    assert ff.removed_by(name, [_run(leave(13.5))]).value == "leave_group at an unexplained time"


@flips(ff.removal_reason)
def test_removal_reason_names_the_broker_line() -> None:
    name = "rebalancing, session 15 s > max poll 6 s"
    case = ClockCase(session_timeout_ms=15000, max_poll_interval_ms=6000, sleep_s=22, rebalance=True)
    assert assert_flips(ff.removal_reason(name, [_run(leave(6.7), case=case)]),
                        ff.removal_reason(name, [_run(join_timeout(9.0), case=case)])) == (
        "LeaveGroup, client reason: not provided", "rebalance timeout (join)")
    assert ff.removal_reason(name, [_run(case=case)]).value == "not removed"


@flips(ff.kept_past_session)
def test_kept_past_session_compares_the_median_removal_time() -> None:
    name = "sleeping, session 6 s < max poll 15 s"
    kept = [_run(leave(15.6)), _run(leave(15.4)), _run(expired(6.1))]
    dropped = [_run(expired(6.1)), _run(expired(6.3)), _run(leave(15.4))]
    assert assert_flips(ff.kept_past_session(name, kept),
                        ff.kept_past_session(name, dropped)) == (True, False)
    assert ff.kept_past_session(name, [_run()]).value is True  # never removed: the whole sleep


# -- a rebalance while the worker is paused (hand-made timelines) -------------------------------
def _paused(*, fetched: int, partition_back: bool = True) -> ScenarioResult:
    tl = Timeline()
    r = ScenarioResult(strategy="raw-pause + rebalance", params=PauseParams(), timeline=tl,
                       topic="t", group="g", produced=3)

    def at(s: float) -> float:
        return tl.t0 + s

    r.marks = {"paused_partition": 1, "rebalance_start": 5.0, "joiner_left": 8.0, "outage_end": 12.0}
    tl.record("worker", "consumed", partition=1, offset=0, at=at(2.0))
    tl.record("worker", "pause", phase="start", detail={"partitions": [1]}, at=at(2.0))
    tl.record("worker", "revoked", detail={"partitions": [1]}, at=at(5.5))
    tl.record("worker", "assigned", detail={"partitions": [1] if partition_back else [0]}, at=at(5.6))
    for i in range(fetched):
        tl.record("worker", "consumed", partition=1, offset=0, at=at(6.0 + i))
    tl.record("worker", "consumed", partition=1, offset=0, at=at(12.1))  # after the outage
    return r


@flips(ff.pause_held)
def test_pause_held_counts_deliveries_inside_the_window() -> None:
    assert assert_flips(ff.pause_held("raw-pause + rebalance", [_paused(fetched=0)] * 3),
                        ff.pause_held("raw-pause + rebalance",
                                      [_paused(fetched=0), _paused(fetched=1)])) == (True, False)
    # a repeat whose partition went elsewhere tests nothing: it neither holds nor breaks it
    moved = _paused(fetched=1, partition_back=False)
    assert ff.pause_held("raw-pause + rebalance", [_paused(fetched=0), moved]).value is True
    assert ff.pause_held("raw-pause + rebalance", [moved]).value.startswith("not tested")


@flips(ff.fetched_while_paused)
def test_fetched_while_paused_is_the_median_count() -> None:
    assert assert_flips(
        ff.fetched_while_paused("raw-pause + rebalance", [_paused(fetched=0)] * 2),
        ff.fetched_while_paused("raw-pause + rebalance",
                                [_paused(fetched=2), _paused(fetched=2), _paused(fetched=0)])) == (0, 2)


@flips(ff.kept_partition)
def test_kept_partition_checks_the_premise() -> None:
    assert assert_flips(
        ff.kept_partition("raw-pause + rebalance", [_paused(fetched=0)]),
        ff.kept_partition("raw-pause + rebalance", [_paused(fetched=0, partition_back=False)])) == (
        True, False)
    stuck = _paused(fetched=0)  # revoked again and never assigned: no fetch, but no partition either
    stuck.timeline.record("worker", "revoked", detail={"partitions": [1]}, at=stuck.timeline.t0 + 9.0)
    assert ff.kept_partition("raw-pause + rebalance", [stuck]).value is False


def test_the_clock_and_spread_pictures_draw_hand_made_runs() -> None:
    from offsetlab.lab.experiments import e07_plots

    other = ClockCase(session_timeout_ms=15000, max_poll_interval_ms=6000, sleep_s=22, rebalance=True)
    runs = {CASE.name: [_run(leave(15.6)), _run()], other.name: [_run(expired(6.1), case=other)]}
    assert len(e07_plots.plot_clocks(runs).axes) == 1
    rows = {"raw-sleep": [{**_row(), "longest_pause_s": None, "worker_gone_after_s": 3.2}],
            "raw-pause": [{**_row(), "longest_pause_s": 9.6, "worker_gone_after_s": None}]}
    assert len(e07_plots.plot_spread(rows, PauseParams()).axes) == 1
    main = e07_plots.plot_main({"raw-pause": [_paused(fetched=1)]}, {"raw-pause": rows["raw-pause"]},
                               PauseParams())
    assert len(main.axes) == 2


# -- the consumer protocol's own lines (KIP-848; Kafka 4.1.1, seen with confluent-kafka 2.16) -------
def _consumer_line(s: float, text: str) -> str:
    return (f"{_at(s)} [group-coordinator-event-processor-1] INFO "
            f"org.apache.kafka.coordinator.group.GroupMetadataManager - [GroupCoordinator id=1 "
            f"topic=__consumer_offsets partition=1] [GroupId {GROUP}] {text}")


def test_broker_log_reads_the_consumer_protocols_lines() -> None:
    m = "KKxT9Jt6RvyS+Ru6Su6ilA"
    (e,) = parse_line(_consumer_line(7.0, f"Member {m} fenced from the group because the member "
                                          "session expired."))
    assert (e.kind, e.group, e.member, e.reason) == ("session_expired", GROUP, m, "the member session expired")
    assert abs(e.at - (T0 + 7.0)) < 1e-3
    (left,) = parse_line(_consumer_line(9.0, f"Member {m} left the consumer group."))
    assert (left.kind, left.member, left.reason) == ("leave_heartbeat", m, None)
    static = parse_line(_consumer_line(9.0, f"Static member {m} with instance id i-1 temporarily left "
                                            "the consumer group."))[0]
    assert (static.kind, static.member, static.reason) == ("leave_heartbeat", m, "temporarily")
    late = parse_line(_consumer_line(9.0, f"Member {m} fenced from the group because it failed to "
                                          "transition from epoch 3 within 15000ms."))[0]
    assert (late.kind, late.reason) == ("rebalance_timeout", "it failed to transition from epoch 3 "
                                                             "within 15000ms")
    assert parse_line(_consumer_line(9.0, f"Member {m} fenced from the group because reasons."))[0].kind == "fenced"
    joined = parse_line(_consumer_line(1.0, f"Member {m} joins the consumer group using the consumer "
                                            "protocol."))[0]
    assert (joined.kind, joined.member) == ("joined", m)
    bump = parse_line(_consumer_line(1.0, "Bumped group epoch to 2 with metadata hash 0."))[0]
    assert (bump.kind, bump.member, bump.reason) == ("epoch_bump", None, "2")
    assert parse_line(_consumer_line(1.0, "Computed a new target assignment for epoch 1 with "
                                          "'uniform' assignor in 0ms.")) == []
    # the classic GroupId form is still a LeaveGroup, not a leave heartbeat
    classic = _line(3, f"[GroupId {GROUP}] Dynamic member m-1 has left group through explicit "
                       "`LeaveGroup` request; client reason: not provided")
    assert parse_line(classic)[0].kind == "leave_group"
