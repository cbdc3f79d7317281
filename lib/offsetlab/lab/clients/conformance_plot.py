"""Notebook 09's main figure: the matrix's numeric rows per client column, each beside the
reference it is read against (the initial rebalance delay, the dead member's session minus
the gap before the restart, the broker-down threshold). A cell that is not a number (a
client's fatal error, ``unsupported``, ``failed: ...``) is written where its bar would be."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure

from offsetlab.lab.clients.conformance import MatrixResult, column_name

__all__ = ["plot_numbers"]

_ROWS = (("first_join_s", "two members of a new group: s until both hold partitions"),
         ("join_after_killed_member_s", "restart after a SIGKILL: s until the new member holds"),
         ("static_member_rejoin_s", "the same with group.instance.id"),
         ("broker_down_at_start", "broker down at start: s until the first error"))


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _reference(result: MatrixResult, row: str, key: tuple[str, str, str],
               down_within_s: float) -> float | None:
    m = result.measures.get(key) or {}
    if row == "first_join_s":
        return m.get("delay_s")
    if row in ("join_after_killed_member_s", "static_member_rejoin_s"):
        if m.get("session_s") is None:
            return None
        return round(m["session_s"] - (m.get("gap_s") or 0.0), 3)
    return down_within_s


def plot_numbers(result: MatrixResult, *, down_within_s: float = 20.0) -> Figure:
    """One panel a row, one bar a client column; a black tick marks the row's reference:
    the broker's initial rebalance delay, ``session - gap`` (what waiting out the dead
    member's session costs the restarted one), the threshold for a prompt broker-down report."""
    cols = result.columns
    names = [column_name(c, g) for c, g in cols]
    fig = Figure(figsize=(11, 6.5))
    axes = fig.subplots(len(_ROWS), 1, sharex=False)
    for ax, (row, title) in zip(axes, _ROWS, strict=True):
        for i, (client, proto) in enumerate(cols):
            key = (row, client, proto)
            cell = result.cell(row, client, proto)
            value = (result.measures.get(key) or {}).get("seconds") if row == "broker_down_at_start" \
                else _num(cell.value)
            if value is not None:
                ax.barh(i, value, color=f"C{i}", height=0.6)
                ax.text(value, i, f" {value:.1f}", va="center", fontsize=8)
            else:
                ax.text(0.1, i, str(cell.value), va="center", fontsize=8, color="dimgray")
            ref = _reference(result, row, key, down_within_s)
            if ref is not None and ref > 0:
                ax.plot([ref, ref], [i - 0.4, i + 0.4], color="black", lw=2)
        ax.set_yticks(range(len(cols)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlim(left=0)
    axes[-1].set_xlabel("seconds (black tick: the reference: initial delay, session - gap, "
                        f"{down_within_s:g} s threshold)")
    fig.tight_layout()
    return fig
