"""E01's finders for the restart after a kill (dynamic against static membership) and for a
member joining a consuming group (eager against cooperative-sticky): they judge the rows of
:mod:`.e01_restart` and the summaries of :func:`.e01_rebalance.summarize`.

Timings are judged on the median of the repeats; outcomes counted over repeats are decided by
the majority of them (a finding that flips between runs shows up as a changed output, not as
a hidden average).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from offsetlab.lab.findings import Finding, finder, median_of

__all__ = ["handled_twice", "rebalance_rounds", "restart_admitted_by_rebalance",
           "restart_waited_for", "revoked_per_member", "stopped_during_rebalance"]

Rows = Sequence[Mapping[str, Any]]


def _majority(flags: Sequence[bool]) -> bool:
    return sum(bool(f) for f in flags) * 2 > len(flags)


@finder("{} member restarted right after a kill: its join waited for")
def restart_waited_for(kind: str, rows: Rows, session_timeout_ms: int, rebalance_timeout_ms: int
                       ) -> Finding:
    """Which clock the restarted member's join waited for, from the median of
    ``since_kill_s`` (kill to first assignment): under half the dead member's session timeout
    is ``nothing``; up to halfway between the session timeout and the rebalance timeout (at
    least twice it, see ``RestartSettings``) is ``the session timeout``; beyond,
    ``the rebalance timeout``."""
    values = [r["since_kill_s"] for r in rows]
    med = median_of(values)
    session_s, rebalance_s = session_timeout_ms / 1000, rebalance_timeout_ms / 1000
    if med is None:
        value = "not measured"
    elif med < session_s / 2:
        value = "nothing"
    elif med < (session_s + rebalance_s) / 2:
        value = "the session timeout"
    else:
        value = "the rebalance timeout"
    return Finding(f"{kind} member restarted right after a kill: its join waited for", value,
                   rule=f"median since_kill_s: < {session_s / 2:g} s nothing; < "
                        f"{(session_s + rebalance_s) / 2:g} s the session timeout ({session_s:g} s); "
                        f"else the rebalance timeout ({rebalance_s:g} s)",
                   measured={"values": values, "median": med})


@finder("{} member restarted right after a kill: the broker began a rebalance to admit it")
def restart_admitted_by_rebalance(kind: str, rows: Rows) -> Finding:
    """In most repeats the broker's log gives ``Adding new member ...`` as the reason of a
    rebalance it began after the kill: it admitted the restarted member as a new one, by a
    rebalance (which then waits for the dead member). A static member that takes the dead
    one's place needs none; a later rebalance for another reason (kafka-python's leader
    re-joining a Stable group on its own, ``Leader ... re-joining group during Stable``) is
    not one that admitted it. Repeats whose log could not be read are left out."""
    reasons = [r["rebalance_reasons"] for r in rows if r.get("rebalance_reasons") is not None]
    admitted = [any(str(x).startswith("Adding new member") for x in rs) for rs in reasons]
    return Finding(f"{kind} member restarted right after a kill: the broker began a rebalance to admit it",
                   bool(admitted) and _majority(admitted),
                   rule="a 'Preparing to rebalance group <group>' line after the kill with reason "
                        "'Adding new member ...', in most repeats",
                   measured=[[str(x)[:60] for x in rs] for rs in reasons])


@finder("{}: partitions an existing member revoked when a member joined")
def revoked_per_member(strategy: str, summaries: Sequence[Mapping[str, Any]]) -> Finding:
    """How many partitions each existing member revoked between the new member's subscribe
    and its assignment: the sorted distinct counts over members and repeats (eager revokes
    everything it held, cooperative only what moves)."""
    counts = sorted({len(m["revoked"]) for s in summaries for m in s["members"].values()})
    held = sorted({len(m["held_before"]) for s in summaries for m in s["members"].values()})
    return Finding(f"{strategy}: partitions an existing member revoked when a member joined",
                   counts, rule="sorted distinct len(revoked) over existing members and repeats",
                   measured={"revoked": counts, "held before": held})


@finder("{}: the existing members stopped handling messages in every repeat of the rebalance")
def stopped_during_rebalance(strategy: str, summaries: Sequence[Mapping[str, Any]],
                             heartbeat_interval_ms: int) -> Finding:
    """In every repeat, the existing members' longest stretch without a handled message that
    overlaps the rebalance (the longer of the two members') is at least half a heartbeat
    interval: a member held in a JoinGroup until another member learns of the rebalance from
    its next heartbeat stops for up to one interval; the steady producer leaves ~0.1 s between
    two handled messages otherwise (``steady_gap_s``). Judged on the shortest repeat: a stop
    that only some repeats show (a follow-up rebalance kafka-python starts on its own under
    load, see the notebook) does not make it True."""
    stops = [max(m["longest_stop_s"] for m in s["members"].values()) for s in summaries]
    steady = [max(m["steady_gap_s"] for m in s["members"].values()) for s in summaries]
    limit = heartbeat_interval_ms / 2 / 1000
    return Finding(f"{strategy}: the existing members stopped handling messages in every repeat of "
                   "the rebalance", bool(stops) and min(stops) >= limit,
                   rule=f"min over repeats of the longest stop >= {limit:g} s (half the heartbeat "
                        "interval)",
                   measured={"values": stops, "median": median_of(stops), "steady gaps": steady})


@finder("{}: messages handled twice")
def handled_twice(strategy: str, summaries: Sequence[Mapping[str, Any]]) -> Finding:
    """Messages handled more than once (by anyone), added up over the repeats."""
    per_repeat = [len(s["handled_twice"]) for s in summaries]
    return Finding(f"{strategy}: messages handled twice", sum(per_repeat),
                   rule="sum over repeats of (partition, offset) handled more than once",
                   measured={"per repeat": per_repeat,
                             "handled": [s["handled"] for s in summaries]})


@finder("{}: fewest generations the broker stabilized for one joining member")
def rebalance_rounds(strategy: str, runs: Sequence[Mapping[str, Any]]) -> Finding:
    """``generations_after_join`` of each run (from the broker's log, C's subscribe to the
    end of the run): the fewest over repeats (one rebalance: 1; cooperative's two rounds: 2;
    a follow-up rebalance in some repeat does not raise it)."""
    values = [r["generations_after_join"] for r in runs if r.get("generations_after_join") is not None]
    return Finding(f"{strategy}: fewest generations the broker stabilized for one joining member",
                   min(values) if values else None,
                   rule="min over repeats of 'Stabilized group <group> generation' lines after "
                        "the new member subscribed", measured=values)
