"""The values of the conformance matrix's join rows, from a member's recorded events.

Pure functions over :attr:`ChildMember.events <offsetlab.lab.clients.child.ChildMember.events>`
(dicts with ``event`` and ``at``, the child's wall clock) and the broker's log lines; the
drivers are in :mod:`offsetlab.lab.clients.conformance_join`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from offsetlab.lab import broker_log

Event = dict[str, Any]

__all__ = ["start_at", "all_hold_at", "first_hold_value", "first_join_value", "returned_after_join",
           "join_completed_at", "ReturnCheck", "returned_after_broker_join", "rejoin_value", "killed_gap", "dead_member_removed_at", "fatal_error", "error_name"]


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


def join_completed_at(log: Sequence[broker_log.GroupLogEvent], events: Sequence[Event],
                      group_protocol: str) -> broker_log.GroupLogEvent | None:
    """The broker's line that completed this member's first join (:data:`broker_log.JOIN_COMPLETES`).

    Classic: the ``assignment_received`` line of the generation the member's first ``join``
    event names; where the client gives none (KafkaJS), of the first generation whose
    assignment arrived after the broker admitted the member (its ``joined`` line, by the
    member id of its ``join`` event), else after its ``run_called``. Consumer protocol: the
    first ``epoch_bump`` after the member's ``joined`` line (else after ``run_called``).
    None when the log has no such line."""
    join = _first(events, "join") or {}
    member, generation = join.get("member_id"), join.get("generation")
    kind = "epoch_bump" if group_protocol == "consumer" else "assignment_received"
    timed = [e for e in log if e.at is not None]
    if kind == "assignment_received" and generation is not None:
        return next((e for e in timed if e.kind == kind and e.reason == str(generation)), None)
    admitted = next((i for i, e in enumerate(timed) if e.kind == "joined" and member is not None
                     and e.member == member), None)
    if admitted is None:
        since = start_at(events)
        if since is None:
            return None
        # the log's times are whole milliseconds (truncated): a line of the same moment may read
        # up to 1 ms early
        admitted = next((i for i, e in enumerate(timed) if e.at >= since - 0.001), len(timed))
    return next((e for e in timed[admitted:] if e.kind == kind), None)


@dataclass(frozen=True)
class ReturnCheck:
    """One member's ``run_returns_after_join``: when its call returned (``run_returned``) and
    when the broker logged its join complete; ``after`` None when either is missing."""

    returned_at: float | None
    join_line: broker_log.GroupLogEvent | None

    @property
    def after(self) -> bool | None:
        if self.returned_at is None or self.join_line is None or self.join_line.at is None:
            return None
        return self.returned_at >= self.join_line.at

    @property
    def margin_s(self) -> float | None:
        """Seconds from the broker's line to the return (negative: returned before it)."""
        if self.after is None:
            return None
        assert self.returned_at is not None and self.join_line is not None
        return round(self.returned_at - float(self.join_line.at or 0.0), 3)

    def describe(self) -> str:
        if self.returned_at is None:
            return "never returned"
        if self.join_line is None:
            return "no join-complete line in the broker log"
        return (f"returned {self.margin_s:+.3f} s after the broker's {self.join_line.kind} "
                f"(generation/epoch {self.join_line.reason})")


def returned_after_broker_join(log: Sequence[broker_log.GroupLogEvent], events: Sequence[Event],
                               group_protocol: str) -> ReturnCheck:
    """Whether the call that starts consuming returned (its ``run_returned``: KafkaJS's awaited
    ``run()``; Python: the first poll that delivered the assignment) at or after the broker
    logged the member's join complete (:func:`join_completed_at`): both clocks are the
    machine's wall clock. A client whose call returned before its join completed reads False."""
    ret = _first(events, "run_returned")
    return ReturnCheck(float(ret["at"]) if ret else None,
                       join_completed_at(log, events, group_protocol))


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
