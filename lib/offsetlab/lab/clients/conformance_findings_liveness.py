"""The findings of the matrix's liveness rows, read from their cells
(:mod:`~offsetlab.lab.clients.conformance_liveness`): ``{}`` is the column's name
(:func:`column_name`: the client, with ``(KIP-848)`` for the consumer protocol)."""

from __future__ import annotations

from collections.abc import Sequence

from offsetlab.lab.clients.matrix import Cell
from offsetlab.lab.findings import Finding, finder
from offsetlab.lab.removal_clock import SESSION

__all__ = ["column_name", "sleep_removed_by", "removed_by_session", "pause_kept",
           "pause_on_error_kept", "pause_survived"]


def column_name(cell: Cell) -> str:
    return cell.client if cell.group_protocol == "classic" else f"{cell.client} (KIP-848)"


_CASES = {"sleep_evicted_by_session_first": "session < max poll",
          "sleep_evicted_by_max_poll_first": "max poll < session"}


def _one(cells: Sequence[Cell], behaviour: str) -> list[Cell]:
    return [c for c in cells if c.behaviour == behaviour]


@finder("{}, session < max poll: a blocked handler's member removed by",
        "{}, max poll < session: a blocked handler's member removed by")
def sleep_removed_by(cell: Cell) -> Finding:
    """The clock the broker's removal line names (``session timeout``, ``max poll
    interval``, ``not removed``, or ``n/a`` where the client has no max poll interval)."""
    return Finding(f"{column_name(cell)}, {_CASES[cell.behaviour]}: a blocked handler's member "
                   f"removed by", cell.value,
                   rule="the broker log's removal line during the block and the clock whose time "
                        "it fits (offsetlab.lab.removal_clock)", measured=cell.evidence)


@finder("blocked handler, session < max poll: columns whose member the session timeout removed")
def removed_by_session(cells: Sequence[Cell]) -> Finding:
    """Which clients stop heartbeating when the handler blocks (their member goes at the
    session timeout although the max poll interval is three times as long)."""
    rows = _one(cells, "sleep_evicted_by_session_first")
    return Finding("blocked handler, session < max poll: columns whose member the session timeout "
                   "removed", sorted(column_name(c) for c in rows if c.value == SESSION),
                   rule="cells of sleep_evicted_by_session_first whose value is 'session timeout'",
                   measured={column_name(c): c.value for c in rows})


@finder("{}: all partitions paused longer than both clocks, membership kept")
def pause_kept(cell: Cell) -> Finding:
    return Finding(f"{column_name(cell)}: all partitions paused longer than both clocks, "
                   f"membership kept", cell.value,
                   rule="no rebalance/removal line of the broker, no member join/assign/revoke "
                        "event and no message of the paused partitions handled by the other member "
                        "during the pause", measured=cell.evidence)


@finder("{}: paused on a failing dependency, membership kept and nothing lost")
def pause_on_error_kept(cell: Cell) -> Finding:
    return Finding(f"{column_name(cell)}: paused on a failing dependency, membership kept and "
                   f"nothing lost", cell.value,
                   rule="as for the plain pause, from the outage's start to the end of the run, and "
                        "every produced message handled by the end", measured=cell.evidence)


@finder("{}: partitions kept through a rebalance stay paused")
def pause_survived(cell: Cell) -> Finding:
    return Finding(f"{column_name(cell)}: partitions kept through a rebalance stay paused",
                   cell.value,
                   rule="the paused member handled no message of the partitions it kept while the "
                        "joiner handled messages produced at the same time", measured=cell.evidence)
