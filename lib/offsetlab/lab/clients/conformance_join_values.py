"""The values of the conformance matrix's join rows, from a member's recorded events.

Pure functions over :attr:`ChildMember.events <offsetlab.lab.clients.child.ChildMember.events>`
(dicts with ``event`` and ``at``, the child's wall clock) and the broker's log lines; the
drivers are in :mod:`offsetlab.lab.clients.conformance_join`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from offsetlab.lab import broker_log

Event = dict[str, Any]

__all__ = ["start_at", "all_hold_at", "first_hold_value", "first_join_value", "returned_after_join",
           "rejoin_value", "killed_gap", "dead_member_removed_at", "fatal_error", "error_name"]


def _first(events: Sequence[Event], kind: str) -> Event | None:
    return next((e for e in events if e.get("event") == kind), None)


def start_at(events: Sequence[Event]) -> float | None:
    """When the member started consuming: its ``run_called`` (else ``ready``) wall time."""
    ev = _first(events, "run_called") or _first(events, "ready")
    return float(ev["at"]) if ev else None


def _parts(e: Event) -> set[tuple[str, int]]:
    return {(str(t), int(p)) for t, p in e.get("partitions") or []}


def all_hold_at(members: Sequence[Sequence[Event]]) -> float | None:
    """The first wall time at which every member holds at least one partition (replaying
    their ``assigned``/``revoked``/``lost`` events in time order); None when never."""
    merged = sorted(((float(e["at"]), i, e) for i, evs in enumerate(members) for e in evs
                     if e.get("event") in ("assigned", "revoked", "lost")),
                    key=lambda x: (x[0], x[1]))
    held: list[set[tuple[str, int]]] = [set() for _ in members]
    for at, i, e in merged:
        if e["event"] == "assigned":
            held[i] |= _parts(e)
        else:
            held[i] -= _parts(e)
        if members and all(held):
            return at
    return None


def first_hold_value(members: Sequence[Sequence[Event]]) -> float | None:
    """Seconds from the earliest member's start until the first member holds a partition."""
    starts = [s for s in map(start_at, members) if s is not None]
    held = [h for h in (all_hold_at([evs]) for evs in members) if h is not None]
    return round(min(held) - min(starts), 3) if starts and held else None


def first_join_value(members: Sequence[Sequence[Event]]) -> float | None:
    """Seconds from the earliest member's start until all hold partitions (None: never)."""
    starts = [start_at(evs) for evs in members]
    held = all_hold_at(members)
    if held is None or any(s is None for s in starts):
        return None
    return round(held - min(s for s in starts if s is not None), 3)


def returned_after_join(events: Sequence[Event]) -> bool | None:
    """Whether the member's first ``run_returned`` came after its first ``join`` (False
    when it returned before any join; None when it never returned)."""
    kinds = [e.get("event") for e in events]
    if "run_returned" not in kinds:
        return None
    returned = kinds.index("run_returned")
    return "join" in kinds and kinds.index("join") < returned


def rejoin_value(events: Sequence[Event]) -> float | None:
    """Seconds from the member's start until it first holds partitions."""
    start, held = start_at(events), all_hold_at([events])
    return None if start is None or held is None else round(held - start, 3)


def killed_gap(kill_at: float, events: Sequence[Event]) -> float | None:
    """Seconds from the kill (wall time) to the new member's start."""
    start = start_at(events)
    return None if start is None else round(start - kill_at, 3)


def dead_member_removed_at(lines: Sequence[str], group: str) -> float | None:
    """When the broker's log says it dropped a member of ``group`` whose session expired
    (classic ``heartbeat_expired``, KIP-848 ``session_expired``: :mod:`offsetlab.lab.broker_log`)."""
    hits = [e.at for e in broker_log.group_events(lines, group)
            if e.kind in ("heartbeat_expired", "session_expired") and e.at is not None]
    return min(hits) if hits else None


def fatal_error(events: Sequence[Event]) -> str | None:
    """The first fatal ``error`` event's code (librdkafka) or class name, None when none.
    An error with librdkafka's code ``_FATAL`` counts whatever its ``fatal`` flag says: the
    code itself means the client instance can do nothing more."""
    for e in events:
        if e.get("event") == "error" and (e.get("fatal") or e.get("code") == "_FATAL"):
            return str(e.get("code") or error_name(e.get("error")))
    return None


def error_name(text: str | None) -> str:
    """``"ClassName: message"`` -> ``"ClassName"``."""
    return (text or "").split(":", 1)[0].strip() or "unknown"
