"""The values of the matrix's liveness rows, computed from recorded data only: the members'
events (:attr:`~offsetlab.lab.clients.child.ChildMember.events`, wall-clock ``at``) and the
broker log's group events (:mod:`offsetlab.lab.broker_log`), never from the scenario's
parameters (those only say which clock is which when a removal line is read, as in E07).

- :func:`sleep_value`: which clock removed a member whose handler blocked
  (:mod:`offsetlab.lab.removal_clock`: ``session timeout``, ``max poll interval``,
  ``not removed``);
- :func:`membership_kept`: during a pause (or a dependency outage handled by pausing), did
  the group change (a rebalance / epoch bump / removal line, or a member's own
  join/assigned/revoked/lost/rebalancing event), and did the other member handle messages of
  the paused member's partitions;
- :func:`lost_values`: produced values nobody handled;
- :func:`pause_survived`: after a rebalance, did the paused member receive messages of the
  partitions it kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from offsetlab.lab.broker_log import CONSUMER_REMOVALS, REBALANCES, REMOVALS, GroupLogEvent
from offsetlab.lab.removal_clock import first_removal, removal_clock

__all__ = ["MEMBERSHIP_EVENTS", "Kept", "sleep_value", "membership_kept", "lost_values",
           "pause_survived", "handled_in"]

Event = Mapping[str, Any]
#: a member's own events that say its membership or assignment changed
MEMBERSHIP_EVENTS = ("join", "assigned", "revoked", "lost", "rebalancing")
#: broker lines that say the group changed
GROUP_CHANGES = REBALANCES + REMOVALS + CONSUMER_REMOVALS


def _at(e: Event) -> float:
    return float(e.get("at") or 0.0)


def _tp(e: Event) -> tuple[str, int]:
    return str(e.get("topic")), int(e.get("partition") or 0)


def handled_in(events: Iterable[Event], start: float, end: float,
               partitions: set[tuple[str, int]] | None = None) -> list[Event]:
    """``handled`` events at ``[start, end]`` (of ``partitions`` only, when given)."""
    return [e for e in events if e.get("event") == "handled" and start <= _at(e) <= end
            and (partitions is None or _tp(e) in partitions)]


def sleep_value(log: Sequence[GroupLogEvent], *, block_start: float, block_end: float,
                session_s: float, max_poll_s: float | None, heartbeat_s: float = 1.0,
                member_events: Sequence[Event] = ()) -> tuple[str, str]:
    """``(value, evidence)``: the clock behind the first removal line of the group's (only)
    member while its handler blocked from ``block_start`` to ``block_end`` (epoch s). For a
    member that reports its heartbeats (pass its events as ``member_events``: KafkaJS), the
    session counts from its last heartbeat or completed join before the block."""
    e = first_removal(log, block_start, block_end)
    after = None if e is None or e.at is None else round(e.at - block_start, 2)
    beats = [_at(b) for b in member_events if b.get("event") in ("heartbeat", "join")]
    before = [b for b in beats if b <= block_start]
    during = [b for b in beats if block_start < b <= block_end]
    session_from = round(max(before) - block_start, 2) if before else None
    value = removal_clock(e, after, session_s=session_s, max_poll_s=max_poll_s,
                          heartbeat_s=heartbeat_s, session_from_s=session_from)
    mp = "none" if max_poll_s is None else f"{max_poll_s:g} s"
    clocks = f"session {session_s:g} s, max poll {mp}"
    if beats:
        clocks += (f"; the member's last heartbeat/join event {session_from:g} s from the block's "
                   f"start, " if session_from is not None else "; no heartbeat/join event before the "
                                                                 "block, ")
        clocks += f"{len(during)} during it"
    if e is None:
        return value, f"no removal line in the {block_end - block_start:.1f} s block ({clocks})"
    why = f", reason: {e.reason}" if e.reason else ""
    return value, (f"broker line {e.kind}{why} {after:g} s into the {block_end - block_start:.1f} s "
                   f"block ({clocks})")


@dataclass(frozen=True)
class Kept:
    """What :func:`membership_kept` counted in its window."""

    kept: bool
    group_lines: list[str]        # "kind at s" of the broker's group-change lines, in order
    member_changes: list[str]     # "who:event at s" of the members' own membership events
    taken_over: int               # the other member's handled messages of the paused partitions
    paused_handled: int           # the paused member's handled messages of its paused partitions
    other_handled: int            # the other member's handled messages (all partitions)

    def evidence(self, what: str, seconds: float) -> str:
        return (f"{what} {seconds:.1f} s: broker group lines {self.group_lines or 'none'}, member "
                f"events {self.member_changes or 'none'}; the other member handled "
                f"{self.taken_over} of the paused partitions' messages ({self.other_handled} in "
                f"all), the paused member {self.paused_handled}")


def membership_kept(log: Sequence[GroupLogEvent], members: Mapping[str, Sequence[Event]], *,
                    paused_member: str, paused: set[tuple[str, int]], start: float,
                    end: float) -> Kept:
    """Kept: no group-change line of the broker and no membership event of any member in
    ``[start, end]``, and no other member handled a message of ``paused`` in it."""
    lines = [f"{e.kind} at {e.at - start:.1f} s" for e in log if e.kind in GROUP_CHANGES
             and e.at is not None and start <= e.at <= end]
    changes = [f"{who}:{e['event']} at {_at(e) - start:.1f} s" for who, evs in members.items()
               for e in evs if e.get("event") in MEMBERSHIP_EVENTS and start <= _at(e) <= end]
    others = [e for who, evs in members.items() if who != paused_member
              for e in handled_in(evs, start, end)]
    taken = [e for e in others if _tp(e) in paused]
    own = handled_in(members.get(paused_member, []), start, end, paused)
    return Kept(kept=not lines and not changes and not taken, group_lines=lines,
                member_changes=changes, taken_over=len(taken), paused_handled=len(own),
                other_handled=len(others))


def lost_values(produced: Iterable[str], members: Mapping[str, Sequence[Event]]) -> list[str]:
    """The produced values no member handled (sorted)."""
    handled = {str(e.get("value")) for evs in members.values() for e in evs
               if e.get("event") == "handled"}
    return sorted(set(produced) - handled)


def pause_survived(paused_events: Sequence[Event], other_events: Sequence[Event], *,
                   kept: set[tuple[str, int]], since: float,
                   until: float) -> tuple[bool | None, str]:
    """``(value, evidence)``: True when the paused member handled no message of the
    partitions it ``kept`` through the rebalance in ``[since, until]`` while the other member
    handled messages produced at the same time (None when it kept no partition or the other
    member handled nothing: then the run cannot tell)."""
    own = handled_in(paused_events, since, until, kept)
    other = handled_in(other_events, since, until)
    parts = sorted(p for _, p in kept)
    evidence = (f"kept partitions {parts} paused through the rebalance; in the {until - since:.1f} s "
                f"after producing, it handled {len(own)} of their messages, the joiner handled "
                f"{len(other)} of its own")
    if not kept or not other:
        return None, evidence + ": cannot tell"
    return not own, evidence
