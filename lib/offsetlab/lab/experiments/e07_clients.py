"""E07's question on every client ("The same on KafkaJS and confluent-kafka"): the matrix's
liveness drivers (:mod:`offsetlab.lab.clients.conformance_liveness`, read-only here) run on
one dedicated broker, and what E07 reads from them.

The four cases of the section map to the drivers' behaviours (:data:`CASES`): a handler that
sleeps longer than both clocks (session well below max poll and the other way round), all
partitions ``pause()``-d longer than both clocks, the client's own way to pause on a failing
dependency (KafkaJS docs: ``pause()`` then throw inside ``eachMessage``; Python: pause and
seek back), and a pause across a rebalance. Every member's events land on one
:class:`~offsetlab.lab.timeline_core.Timeline` (lanes ``<tag>-<column>-<a|b>``).

What the drivers do not report and E07 needs: how long a KafkaJS member went without a
heartbeat (:func:`heartbeat_silences`: KafkaJS reports each HEARTBEAT; the Python clients do
not).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from offsetlab.lab.clients import conformance_liveness as live
from offsetlab.lab.clients.columns import column_label
from offsetlab.lab.clients.matrix import Cell
from offsetlab.lab.timeline_core import Timeline

__all__ = ["CASES", "TAGS", "SECTION_BROKER", "SILENCE_FINDINGS", "ClientsRun", "run_clients", "start_clients", "value_table",
           "evidence_table", "heartbeat_silences", "kafkajs_session_s", "longest_silence",
           "lanes", "lane", "plot_clients"]

#: behaviour -> the section's case label
CASES = {
    "sleep_evicted_by_session_first": "(a) sleep, session < max poll",
    "sleep_evicted_by_max_poll_first": "(a) sleep, max poll < session",
    "pause_keeps_membership": "(b) pause()",
    "pause_on_error_keeps_membership": "(c) pause on a failing dependency",
    "pause_survives_rebalance": "(d) pause across a rebalance",
}
#: the drivers' lane tag of each behaviour (conformance_liveness._Scenario's ``tag``)
TAGS = {"sleep_evicted_by_session_first": "sess", "sleep_evicted_by_max_poll_first": "mpoll",
        "pause_keeps_membership": "pause", "pause_on_error_keeps_membership": "perr",
        "pause_survives_rebalance": "preb"}
_ABBR = {("kafka-python", "classic"): "kp", ("kafkajs", "classic"): "kjs",
         ("confluent-kafka", "classic"): "ck", ("confluent-kafka", "consumer"): "ck848"}
#: the section's broker: short sessions for both group protocols (KIP-848's lowered), groups
#: form at once
SECTION_BROKER: dict[str, Any] = {**live.BROKER_SETTINGS, "group.initial.rebalance.delay.ms": 0}
#: the cases whose KafkaJS heartbeat silence is a finding: the blocked handler (silent for the
#: whole block) and the two pauses (a heartbeat every second or two). Not case (c): there the
#: silence ends at KafkaJS's crash after its retries, whose time follows its retry backoff
#: (6.0 s and 11.1 s after the last heartbeat in two runs, for a 5 s session: too close to tell)
SILENCE_FINDINGS = ("sleep_evicted_by_session_first", "pause_keeps_membership",
                    "pause_survives_rebalance")
#: a KafkaJS member's events that show the broker heard from it (a join answers a JoinGroup)
_BEATS = ("heartbeat", "join")
_ENDS = ("consumer_stop", "stopped", "disconnect")


@dataclass
class ClientsRun:
    cells: list[Cell] = field(default_factory=list)
    timeline: Timeline = field(default_factory=Timeline)
    failures: list[tuple[str, str, str, str]] = field(default_factory=list)
    skipped: str | None = None   # why nothing ran (no dedicated broker of this kind)
    seconds: float = 0.0         # wall time of the part, its broker's start included

    def describe(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        text = f"{len(self.cells)} cells"
        if self.failures:
            text += f"; failed: {[f[:3] for f in self.failures]}"
        return text


def run_clients(dedicated: AbstractContextManager[Any], columns: Sequence[tuple[str, str]],
                params: live.LivenessParams, *, log_dir: Path | str | None = None) -> ClientsRun:
    """Every (case, column) at once on the broker ``dedicated`` yields (the notebook's
    ``lab.dedicated(SECTION_BROKER)``; None: skipped). Failed cells are kept in ``failures``
    with the others' results."""
    t0 = time.monotonic()
    run = ClientsRun()
    with dedicated as broker:
        if broker is None or broker.log_path is None:
            run.skipped = "needs a dedicated broker of kind 'kafka' (settings, and a log to read)"
            return run
        try:
            run.cells = live.run_family(broker, params, columns, timeline=run.timeline,
                                        log_dir=log_dir)
        except live.FamilyFailed as exc:
            run.cells, run.failures = exc.cells, exc.failures
    run.seconds = round(time.monotonic() - t0, 1)
    return run


def start_clients(dedicated: AbstractContextManager[Any], columns: Sequence[tuple[str, str]],
                  params: live.LivenessParams, *,
                  log_dir: Path | str | None = None) -> Future[ClientsRun]:
    """:func:`run_clients` in a thread of its own (which starts the broker and, through the
    drivers' threads, every member, and stops them all before it ends): the notebook goes on
    meanwhile and collects the run with ``.result()``."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="e07-clients")
    try:
        return pool.submit(run_clients, dedicated, columns, params, log_dir=log_dir)
    finally:
        pool.shutdown(wait=False)


def _label(cell: Cell) -> str:
    return column_label(cell.client, cell.group_protocol)


def value_table(cells: Sequence[Cell]) -> pd.DataFrame:
    """Rows: the section's cases; columns: the clients; values: the cells' values."""
    rows: dict[str, dict[str, Any]] = {}
    for c in cells:
        rows.setdefault(CASES[c.behaviour], {})[_label(c)] = c.value
    order = [CASES[b] for b in CASES if CASES[b] in rows]
    return pd.DataFrame.from_dict(rows, orient="index").reindex(order)


def evidence_table(cells: Sequence[Cell]) -> pd.DataFrame:
    return pd.DataFrame([{"case": CASES[c.behaviour], "client": _label(c), "value": c.value,
                          "evidence": c.evidence} for c in cells])


def lane(behaviour: str, client: str, group_protocol: str, member: str = "a") -> str:
    return f"{TAGS[behaviour]}-{_ABBR[(client, group_protocol)]}-{member}"


def lanes(timeline: Timeline | set[str], behaviour: str) -> list[str]:
    """The lanes of one case on the timeline (or in a set of lane names), in column order
    (member a before b)."""
    if isinstance(timeline, Timeline):
        present = {r.who for r in timeline.rows()}
    else:
        present = timeline
    return [name for col in _ABBR for m in ("a", "b")
            if (name := lane(behaviour, *col, member=m)) in present]


def longest_silence(events: Sequence[tuple[float, str]]) -> float | None:
    """The longest time without a heartbeat (or join) of one member, from its first join to
    its first stop/disconnect event (or its last event): ``events`` are ``(t, what)``
    rows in time order. None without a join."""
    evs = sorted(events)
    beats = [t for t, what in evs if what in _BEATS]
    if not beats:
        return None
    ends = [t for t, what in evs if what in _ENDS and t >= beats[0]]
    end = ends[0] if ends else evs[-1][0]
    marks = [t for t in beats if t <= end] + [end]
    return round(max(b - a for a, b in zip(marks, marks[1:], strict=False)) if len(marks) > 1
                 else 0.0, 2)


def heartbeat_silences(timeline: Timeline,
                       behaviours: Sequence[str] = tuple(CASES)) -> dict[str, float | None]:
    """Behaviour -> the longest heartbeat silence (s) of its KafkaJS member ``a`` (the blocked,
    paused or failing one), for the behaviours that ran a KafkaJS member."""
    frame = timeline.to_frame() if len(timeline) else pd.DataFrame(columns=["who", "t", "what"])
    out: dict[str, float | None] = {}
    for b in behaviours:
        rows = frame[frame.who.astype(str) == lane(b, "kafkajs", "classic")]
        if not rows.empty:
            out[b] = longest_silence(list(zip(rows.t.astype(float), rows.what.astype(str),
                                              strict=True)))
    return out


def kafkajs_session_s(behaviour: str, params: live.LivenessParams) -> float:
    """The session timeout the drivers gave the KafkaJS member of ``behaviour``."""
    if behaviour == "sleep_evicted_by_session_first":
        return params.short_ms / 1000
    if behaviour == "sleep_evicted_by_max_poll_first":
        return params.long_ms / 1000
    return params.pause_session_ms / 1000


#: how the plot draws each event: (marker, colour, size, legend label)
_MARKS = {
    "heartbeat": ("|", "#9e9e9e", 40, "KafkaJS heartbeat"),
    "handled": ("o", "#1f77b4", 30, "message handled"),
    "handler_failed": ("x", "#d62728", 40, "handler failed"),
    "join": ("^", "#2ca02c", 40, "join"),
    "revoked": ("v", "#000000", 40, "revoked / lost"),
    "lost": ("v", "#000000", 40, "revoked / lost"),
    "rebalancing": ("*", "#ff7f0e", 70, "KafkaJS rebalancing"),
    "crash": ("X", "#d62728", 110, "crash / error"),
    "error": ("X", "#d62728", 110, "crash / error"),
}


def _paused_spans(rows: pd.DataFrame, t_end: float) -> list[tuple[float, float]]:
    spans, start = [], None
    for t, what in zip(rows.t, rows.what, strict=True):
        if what == "pause" and start is None:
            start = float(t)
        elif what in ("resume", "consumer_stop", "stopped") and start is not None:
            spans.append((start, float(t)))
            start = None
    if start is not None:
        spans.append((start, t_end))
    return spans


def plot_clients(run: ClientsRun) -> Any:
    """One panel per case, one lane per member (every client), all on the section's time
    axis: paused spans as bars, the members' events as markers."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    frame = run.timeline.to_frame() if len(run.timeline) else None
    present = set(frame.who.astype(str)) if frame is not None else set()
    case_lanes = {b: lanes(present, b) for b in CASES if lanes(present, b)}
    heights = [0.4 * len(ls) + 0.8 for ls in case_lanes.values()]
    fig = Figure(figsize=(11, sum(heights) + 0.8 if heights else 2))
    axes = fig.subplots(len(case_lanes) or 1, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": heights or [1]})[:, 0]
    if frame is None or not case_lanes:
        axes[0].text(0.5, 0.5, "not run", ha="center", va="center")
        return fig
    t0, t_end = float(frame.t.min()), float(frame.t.max())
    legend: dict[str, Any] = {"paused": Patch(facecolor="#fdd49e", label="paused")}
    for ax, (b, ls) in zip(axes, case_lanes.items(), strict=True):
        for y, who in enumerate(ls):
            rows = frame[frame.who.astype(str) == who]
            for start, end in _paused_spans(rows, t_end):
                ax.broken_barh([(start - t0, end - start)], (y - 0.3, 0.6), facecolors="#fdd49e")
            for what, (marker, color, size, label) in _MARKS.items():
                ts = rows.t[rows.what == what]
                if len(ts):
                    ax.scatter(ts - t0, [y] * len(ts), marker=marker, c=color, s=size, zorder=3)
                    legend.setdefault(label, Line2D([], [], marker=marker, color=color,
                                                    linestyle="", label=label))
        ax.set_yticks(range(len(ls)), ls)
        ax.set_ylim(len(ls) - 0.5, -0.5)
        ax.set_title(CASES[b], fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlim(0, t_end - t0 + 1)
    axes[-1].set_xlabel("seconds since the section's first member event")
    axes[0].legend(handles=list(legend.values()), loc="upper left", bbox_to_anchor=(1.01, 1.0),
                   fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.12, right=0.82, top=0.97, bottom=0.05, hspace=0.45)
    return fig
