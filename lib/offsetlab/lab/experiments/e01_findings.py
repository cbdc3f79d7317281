"""E01's finders for the raw members, the runner and the join sweep (:mod:`offsetlab.lab.findings`).

Each takes what the notebook recorded (raw members, deliveries read from the timeline, the
runner's call times, repeated join times) and returns a :class:`Finding`; timings are judged
on the median of ``repeats`` values, against thresholds that lie between the mechanisms
compared (the rule text says which). The restart and rebalance parts have theirs in
:mod:`.e01_findings_groups`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from offsetlab.lab.findings import Finding, finder, median_of

__all__ = ["consumed_exactly_once", "late_member_joined", "raw_assigned_inside_poll",
           "raw_subscribe_unassigned", "run_returned_at_join", "start_returned_before_join",
           "together_joined"]

#: run() returning at the join takes milliseconds; the nearest other mechanism it could wait
#: for (the group settling after the second member: one heartbeat, 1 s here; consuming the
#: messages: (n - 1) x gap_s) takes a second or more
RUN_RETURN_LIMIT_MS = 500.0


@finder("raw: subscribe() returned with no assignment")
def raw_subscribe_unassigned(members: Iterable[Any]) -> Finding:
    """Every raw member's ``assignment()`` was empty right after ``subscribe()`` returned."""
    saw = {m.name: m.subscribe_saw_assignment for m in members}
    return Finding("raw: subscribe() returned with no assignment", not any(saw.values()),
                   rule="no member's assignment() was non-empty right after subscribe()",
                   measured=saw)


@finder("raw: the assignment arrived inside a poll() call")
def raw_assigned_inside_poll(members: Iterable[Any]) -> Finding:
    """Each raw member's first assignment arrived while one of its ``poll()`` calls ran."""
    inside = {m.name: m.assigned_inside_poll for m in members}
    return Finding("raw: the assignment arrived inside a poll() call",
                   bool(inside) and all(inside.values()),
                   rule="every member: poll() called <= assigned_at <= poll() returned",
                   measured=inside)


@finder("{}: every message consumed exactly once")
def consumed_exactly_once(who: str, deliveries: Any, n_messages: int) -> Finding:
    """``deliveries``: :func:`offsetlab.lab.timeline.deliveries` of the part's topic (one row
    per produced message, its ``consumed`` count)."""
    counts = [int(c) for c in deliveries.consumed]
    return Finding(f"{who}: every message consumed exactly once",
                   len(counts) == n_messages and all(c == 1 for c in counts),
                   rule=f"{n_messages} messages produced, each consumed once",
                   measured=counts)


@finder("runner: start() returned before the group join")
def start_returned_before_join(start_returned: float, join_at: float) -> Finding:
    """``start_returned``: when ``start()`` returned; ``join_at``: when that runner's
    assignment arrived (its ``GroupJoin.at``); both ``time.monotonic()``."""
    ahead_s = join_at - start_returned
    return Finding("runner: start() returned before the group join", ahead_s > 0,
                   rule="start() returned < its runner's GroupJoin.at",
                   measured={"join_after_start_returned_s": round(ahead_s, 3)})


@finder("runner: run() returned within 500 ms of its assignment")
def run_returned_at_join(latencies_ms: Sequence[float]) -> Finding:
    """``latencies_ms``: per repeat, from the awaited runner's assignment to ``run()``
    returning; judged on their median."""
    med = median_of(list(latencies_ms))
    return Finding("runner: run() returned within 500 ms of its assignment",
                   med is not None and med < RUN_RETURN_LIMIT_MS,
                   rule=f"median latency < {RUN_RETURN_LIMIT_MS:g} ms (returning at the join: ms; "
                        "waiting for the group to settle or for messages: >= 1 s)",
                   measured={"values": list(latencies_ms), "median": med})


@finder("delay {} ms: two members starting together waited at least 1.5 x {} ms")
def together_joined(delay_ms: int, join_s: Sequence[float], reference_delay_ms: int) -> Finding:
    """Two members starting an empty group together, ``join_s`` per repeat (the longer of
    the two), against one bound for every delay of the sweep: 1.5 x ``reference_delay_ms``
    (the sweep's non-zero delay, Kafka's default 3000 ms). With that delay, KIP-134 holds the
    join one delay and, because the second member joined during it, another: two delays, at
    least 2 x. With delay 0 nothing holds it but the first member's rejoin on its next
    heartbeat (1 s here), or a join kafka-python abandoned and restarted (about 3.5 s when it
    happens): under 1.5 x either way. The median of the repeats is compared."""
    med = median_of(list(join_s))
    limit = 1.5 * reference_delay_ms / 1000
    return Finding(f"delay {delay_ms} ms: two members starting together waited at least 1.5 x "
                   f"{reference_delay_ms} ms", med is not None and med >= limit,
                   rule=f"median join_s >= {limit:g} s (two delays of {reference_delay_ms / 1000:g} s "
                        f"would be {2 * reference_delay_ms / 1000:g} s, one {reference_delay_ms / 1000:g} s)",
                   measured={"values": list(join_s), "median": med})


@finder("delay {} ms: a member joining a stable group waited less than the delay")
def late_member_joined(delay_ms: int, join_s: Sequence[float], heartbeat_interval_ms: int
                       ) -> Finding:
    """A member joining a group that is not empty, ``join_s`` per repeat. The initial delay
    is for empty groups; this join lasts until the existing members rejoin on their next
    heartbeat (<= ``heartbeat_interval_ms``). Meaningful when the delay is at least twice the
    heartbeat interval (the notebook's 3000 ms against 1000 ms)."""
    if delay_ms < 2 * heartbeat_interval_ms:
        raise ValueError(f"delay {delay_ms} ms is too close to the heartbeat interval "
                         f"{heartbeat_interval_ms} ms to tell the two apart")
    med = median_of(list(join_s))
    return Finding(f"delay {delay_ms} ms: a member joining a stable group waited less than the delay",
                   med is not None and med < delay_ms / 1000,
                   rule=f"median join_s < {delay_ms / 1000:g} s (the existing members rejoin within "
                        f"a heartbeat, {heartbeat_interval_ms / 1000:g} s)",
                   measured={"values": list(join_s), "median": med})
