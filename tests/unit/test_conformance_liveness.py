"""The liveness rows of the conformance matrix on hand-made member events and hand-made broker
log lines: every value comes out both ways (no broker, no child process); the findings'
flip tests are in test_findings_conformance_liveness.py (where the coverage test looks)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from offsetlab.lab.broker_log import group_events
from offsetlab.lab.clients import conformance_liveness_values as vals
from offsetlab.lab.clients.conformance_liveness import LivenessParams
from offsetlab.lab.removal_clock import removal_clock

T0 = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC).timestamp()
G = "live-sess-ck848-1"


def _at(s: float) -> str:
    return datetime.fromtimestamp(T0 + s, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def _line(s: float, text: str) -> str:
    return (f"{_at(s)} [group-coordinator-event-processor-1] INFO "
            f"org.apache.kafka.coordinator.group.GroupMetadataManager - [GroupCoordinator id=1 "
            f"topic=__consumer_offsets partition=0] {text}")


def fenced(s: float) -> str:
    return _line(s, f"[GroupId {G}] Member Zx9/+a fenced from the group because the member session expired.")


def left(s: float) -> str:
    return _line(s, f"[GroupId {G}] Member Zx9/+a left the consumer group.")


def leave_group(s: float) -> str:
    return _line(s, f"[Group {G}] Member rdkafka-1 has left group through explicit `LeaveGroup` "
                    "request; client reason: not provided")


def expired(s: float) -> str:
    return _line(s, f"Member kjs-1 in group {G} has failed, removing it from the group.")


def rebalance(s: float) -> str:
    return _line(s, f"Preparing to rebalance group {G} in state PreparingRebalance with old "
                    "generation 1 (reason: removing member kjs-1 on heartbeat expiration.).")


def bump(s: float) -> str:
    return _line(s, f"[GroupId {G}] Bumped group epoch to 3 with metadata hash 0.")


def _sleep(*lines: str, session_s: float = 5, max_poll_s: float | None = 15) -> str:
    return vals.sleep_value(group_events(lines, G), block_start=T0, block_end=T0 + 24,
                            session_s=session_s, max_poll_s=max_poll_s)[0]


# -- which clock removed the blocked member ---------------------------------------------------
def test_sleep_value_names_the_clock_from_the_broker_line() -> None:
    assert _sleep(expired(5.2)) == "session timeout"          # KafkaJS stops heartbeating
    assert _sleep(leave_group(15.3)) == "max poll interval"   # the client leaves by itself
    assert _sleep() == "not removed"
    assert _sleep(leave_group(25.0)) == "not removed"         # its close() after the block
    # under KIP-848 librdkafka stops heartbeating at its max poll interval: fenced a session later
    assert _sleep(fenced(19.4)) == "max poll interval"
    assert _sleep(fenced(5.4)) == "session timeout"
    assert _sleep(left(15.2)) == "max poll interval"          # a leave heartbeat while blocked
    assert _sleep(fenced(11.0)) == "session_expired at an unexplained time"
    # the reverse order: max poll 5 s < session 15 s; expiries at 15 s (session) or 20 s (max poll)
    assert _sleep(fenced(15.3), session_s=15, max_poll_s=5) == "session timeout"
    assert _sleep(fenced(19.5), session_s=15, max_poll_s=5) == "max poll interval"
    assert _sleep(leave_group(5.1), session_s=15, max_poll_s=5) == "max poll interval"
    # no max poll interval (KafkaJS): only the session explains a removal
    assert _sleep(expired(5.2), max_poll_s=None) == "session timeout"
    assert _sleep(leave_group(15.3), max_poll_s=None) == "leave_group at an unexplained time"


def test_the_session_counts_from_the_members_last_heartbeat() -> None:
    def kafkajs(expiry_s: float, *beats: float) -> str:
        events = [{"event": "heartbeat", "at": T0 + b} for b in beats]
        return vals.sleep_value(group_events([expired(expiry_s)], G), block_start=T0,
                                block_end=T0 + 24, session_s=5, max_poll_s=None,
                                member_events=events)[0]

    # the last heartbeat 1.4 s before the handler blocked: the session ends 3.6 s into the block
    assert kafkajs(3.63, -2.4, -1.4) == "session timeout"
    assert kafkajs(3.63, -0.1) == "heartbeat_expired at an unexplained time"
    assert kafkajs(5.1, -0.1) == "session timeout"
    joined = vals.sleep_value(group_events([expired(2.6)], G), block_start=T0, block_end=T0 + 24,
                              session_s=5, max_poll_s=None,
                              member_events=[{"event": "join", "at": T0 - 2.4}])
    assert joined[0] == "session timeout"   # no heartbeat yet: the session runs from the join
    # heartbeats went on inside the block: an expiry 5 s after the last one before it is not it
    value, evidence = vals.sleep_value(group_events([expired(9.0)], G), block_start=T0,
                                       block_end=T0 + 24, session_s=5, max_poll_s=None,
                                       member_events=[{"event": "heartbeat", "at": T0 - 0.5},
                                                      {"event": "heartbeat", "at": T0 + 3.5}])
    assert value == "heartbeat_expired at an unexplained time" and "1 during it" in evidence
    # no heartbeat events (the Python clients): up to one heartbeat interval early
    assert _sleep(expired(3.2)) == "session timeout"
    assert _sleep(expired(2.5)) == "heartbeat_expired at an unexplained time"


def test_removal_clock_says_ambiguous_when_both_clocks_fit() -> None:
    (e,) = group_events([fenced(6.0)], G)
    assert removal_clock(e, 6.0, session_s=5, max_poll_s=1) == "session_expired at an ambiguous time"


def test_the_parameters_keep_the_two_explanations_apart() -> None:
    p = LivenessParams()
    short, long_ = p.short_ms / 1000, p.long_ms / 1000
    for session, poll in ((short, long_), (long_, short)):
        (e,) = group_events([fenced(session)], G)
        assert removal_clock(e, session, session_s=session, max_poll_s=poll) == "session timeout"
        (e,) = group_events([fenced(session + poll)], G)
        assert removal_clock(e, session + poll, session_s=session, max_poll_s=poll) == "max poll interval"
    with pytest.raises(ValueError):
        LivenessParams(short_ms=5000, long_ms=9000)
    with pytest.raises(ValueError):
        LivenessParams(block_s=18)


# -- pauses ----------------------------------------------------------------------------------
def ev(event: str, s: float, **kw: Any) -> dict[str, Any]:
    return {"event": event, "at": T0 + s, **kw}


def handled(s: float, partition: int, value: str = "v") -> dict[str, Any]:
    return ev("handled", s, topic="t", partition=partition, offset=0, value=value)


A, B = "pause-kp-a", "pause-kp-b"
PAUSED = {("t", 0)}


def _kept(log: list[str], a: list[dict[str, Any]], b: list[dict[str, Any]]) -> vals.Kept:
    return vals.membership_kept(group_events(log, G), {A: a, B: b}, paused_member=A, paused=PAUSED,
                                start=T0 + 10, end=T0 + 22)


def test_membership_kept_reads_lines_events_and_takeovers() -> None:
    calm = _kept([], [ev("assigned", 2, partitions=[["t", 0]])], [handled(12, 1)])
    assert calm.kept and calm.other_handled == 1 and calm.taken_over == 0
    assert not _kept([rebalance(15)], [], [handled(12, 1)]).kept
    assert not _kept([bump(15)], [], []).kept
    assert not _kept([], [ev("revoked", 15, partitions=[["t", 0]])], []).kept
    taken = _kept([], [], [handled(18, 0)])
    assert not taken.kept and taken.taken_over == 1
    assert _kept([rebalance(5)], [ev("join", 3)], [handled(25, 0)]).kept  # outside the window
    assert "broker group lines ['rebalance at 5.0 s']" in _kept([rebalance(15)], [], []).evidence("paused", 12)


def test_lost_values_are_those_nobody_handled() -> None:
    members = {A: [handled(1, 0, "m0")], B: [handled(2, 1, "m1")]}
    assert vals.lost_values(["m0", "m1"], members) == []
    assert vals.lost_values(["m0", "m1", "m2"], members) == ["m2"]


def test_pause_survived_needs_the_joiners_messages() -> None:
    kept = {("t", 0), ("t", 1)}
    b = [handled(11, 2), handled(11, 3)]
    assert vals.pause_survived([], b, kept=kept, since=T0 + 10, until=T0 + 20)[0] is True
    assert vals.pause_survived([handled(12, 1)], b, kept=kept, since=T0 + 10, until=T0 + 20)[0] is False
    assert vals.pause_survived([handled(5, 1)], b, kept=kept, since=T0 + 10, until=T0 + 20)[0] is True
    assert vals.pause_survived([], [], kept=kept, since=T0 + 10, until=T0 + 20)[0] is None
    assert vals.pause_survived([], b, kept=set(), since=T0 + 10, until=T0 + 20)[0] is None
