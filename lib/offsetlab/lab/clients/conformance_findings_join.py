"""Findings of the conformance matrix's join, commit and failure rows (notebook 09, E01).

Each finder takes the column's name (``kafka-python``, ``kafkajs``, ``confluent-kafka``,
``confluent-kafka (KIP-848)``...) and the cell's value with the numbers it is compared with
(the ``measures`` the drivers of :mod:`~offsetlab.lab.clients.conformance_join` and
:mod:`~offsetlab.lab.clients.conformance_commit` fill in), and returns a
:class:`~offsetlab.lab.findings.Finding`: a boolean, a threshold comparison, a sorted list or
a class name, never a raw number of seconds (those vary from run to run).

The session comparison: after a SIGKILL the broker keeps the dead member until its session
timeout passes, so the new member started ``gap`` seconds after the kill should wait about
``session - gap``. "Waits out the session" is ``value >= 0.5 * (session - gap)``: the
scenario's parameters make ``session - gap`` at least twice an ordinary join, so a join that
did not wait (a static member's, a client that left) comes out below it and one that waited
out the session comes out above it.
"""

from __future__ import annotations

from typing import Any

from offsetlab.lab.findings import Finding, finder

__all__ = ["waits_out_session", "static_beats_session", "first_hold_after_delay",
           "run_returns_after_join", "message_offset_rereads", "idiomatic_rereads_none",
           "batch_redelivered", "broker_down_reported", "broker_down_within"]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _session_bound(session_s: float, gap_s: float | None) -> float:
    return round(0.5 * (session_s - (gap_s or 0.0)), 3)


@finder("{}: a restart after a SIGKILL waits out the dead member's session")
def waits_out_session(column: str, value: Any, session_s: float, gap_s: float | None) -> Finding:
    """``join_after_killed_member_s >= 0.5 * (session - gap)``. A restart that never held
    partitions prints ``never joined`` (or the client's failure), and a new member that
    started no earlier than the session's end prints ``not tested``: neither can say
    whether the session was waited out."""
    name = f"{column}: a restart after a SIGKILL waits out the dead member's session"
    bound = _session_bound(session_s, gap_s)
    measured = {"value": value, "session_s": session_s, "gap_s": gap_s, "bound": bound}
    v = _num(value)
    if v is None:
        return Finding(name, value if isinstance(value, str) else "never joined",
                       rule="join_after_killed_member_s measured?", measured=measured)
    if bound <= 0:
        return Finding(name, "not tested: the new member started after the session's end",
                       rule="gap < session", measured=measured)
    return Finding(name, v >= bound, rule="join_after_killed_member_s >= 0.5 * (session - gap)",
                   measured=measured)


@finder("{}: a static member's restart does not wait out the dead member's session")
def static_beats_session(column: str, value: Any, session_s: float, gap_s: float | None) -> Finding:
    """``static_member_rejoin_s < 0.5 * (session - gap)``; ``unsupported`` stays as it is."""
    name = f"{column}: a static member's restart does not wait out the dead member's session"
    v = _num(value)
    if v is None and isinstance(value, str):
        return Finding(name, value, rule="static membership supported?", measured=value)
    bound = _session_bound(session_s, gap_s)
    return Finding(name, v is not None and v < bound,
                   rule="static_member_rejoin_s < 0.5 * (session - gap)",
                   measured={"value": value, "session_s": session_s, "gap_s": gap_s, "bound": bound})


@finder("{}: the first member of a new group holds partitions only after the initial rebalance delay")
def first_hold_after_delay(column: str, first_hold_s: Any, delay_s: float) -> Finding:
    """``first_hold_s >= 0.9 * group.initial.rebalance.delay`` (the broker's setting; 0.9
    leaves room for the members' clocks): a classic group's first join cannot end before the
    delay. (``first_join_s``, both members holding, is not compared with the delay: under
    KIP-848 it is set by the broker's heartbeat interval, 2.2 s at 1 s and 6.1 s at 5 s here,
    so it can land on either side of 3 s for a reason that is not the delay.)"""
    v = _num(first_hold_s)
    return Finding(f"{column}: the first member of a new group holds partitions only after the "
                   "initial rebalance delay", v is not None and v >= 0.9 * delay_s,
                   rule="first_hold_s >= 0.9 * group.initial.rebalance.delay.ms",
                   measured={"first_hold_s": first_hold_s, "delay_s": delay_s})


@finder("{}: run() (the first poll with an assignment) returns after the group join")
def run_returns_after_join(column: str, value: Any) -> Finding:
    return Finding(f"{column}: run() (the first poll with an assignment) returns after the group join",
                   value is True, rule="run_returned after join, every member", measured=value)


@finder("{}: committing message.offset makes a restarted member handle messages again")
def message_offset_rereads(column: str, value: Any, committed: int | None, messages: int) -> Finding:
    """``commit_message_offset_rereads >= 1``; the broker's committed offset is measured too."""
    return Finding(f"{column}: committing message.offset makes a restarted member handle messages again",
                   isinstance(value, int) and value >= 1, rule="commit_message_offset_rereads >= 1",
                   measured={"value": value, "committed": committed, "messages": messages})


@finder("{}: the idiomatic commit makes a restarted member handle nothing again")
def idiomatic_rereads_none(column: str, value: Any, committed: int | None, messages: int) -> Finding:
    return Finding(f"{column}: the idiomatic commit makes a restarted member handle nothing again",
                   value == 0, rule="idiomatic_commit_rereads == 0",
                   measured={"value": value, "committed": committed, "messages": messages})


@finder("{}: messages delivered again after message 3 of 5 failed in a batch")
def batch_redelivered(column: str, value: Any) -> Finding:
    """The sorted list itself (values the handler got more than once, failed calls included)."""
    got = sorted(str(v) for v in value) if isinstance(value, list) else value
    return Finding(f"{column}: messages delivered again after message 3 of 5 failed in a batch",
                   got, rule="sorted values the handler got more than once", measured=value)


@finder("{}: what the client reports first when the broker is down at start")
def broker_down_reported(column: str, value: Any) -> Finding:
    """The error class (or librdkafka error code) name, or ``nothing within N s``."""
    return Finding(f"{column}: what the client reports first when the broker is down at start",
                   value, rule="class name of the first error/crash event", measured=value)


@finder("{}: a down broker is reported within {} s")
def broker_down_within(column: str, seconds: float | None, limit_s: float) -> Finding:
    """``seconds <= limit_s`` (None: nothing was reported before the cap)."""
    return Finding(f"{column}: a down broker is reported within {limit_s:g} s",
                   seconds is not None and seconds <= limit_s,
                   rule=f"seconds to the first error <= {limit_s:g}",
                   measured={"seconds": seconds, "limit_s": limit_s})
