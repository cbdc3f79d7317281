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

import logging
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from offsetlab.lab.clients import conformance_liveness as live
from offsetlab.lab.clients.columns import column_label
from offsetlab.lab.clients.matrix import Cell
from offsetlab.lab.timeline_core import Timeline

log = logging.getLogger(__name__)

__all__ = ["CASES", "TAGS", "SECTION_BROKER", "ClientsRun", "run_clients", "value_table",
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


def lanes(timeline: Timeline, behaviour: str) -> list[str]:
    """The lanes of one case on the timeline, in column order (member a before b)."""
    present = set(timeline.to_frame().who.astype(str)) if len(timeline) else set()
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


def plot_clients(run: ClientsRun) -> Any:
    """One panel per case, one lane per member (every client), on the section's time axis."""
    import matplotlib.pyplot as plt

    from offsetlab.lab.plots import plot_timeline

    cases = [b for b in CASES if lanes(run.timeline, b)]
    heights = [max(1.5, 0.45 * len(lanes(run.timeline, b)) + 0.9) for b in cases]
    fig, axes = plt.subplots(len(cases) or 1, 1, figsize=(11, sum(heights) or 2), sharex=True,
                             gridspec_kw={"height_ratios": heights or [1]}, squeeze=False)
    frame = run.timeline.to_frame() if len(run.timeline) else None
    for ax, b in zip(axes[:, 0], cases, strict=False):
        plot_timeline(frame, ax, lanes=lanes(run.timeline, b), title=CASES[b],
                      annotate_other=False, group_lines=())
    if not cases:
        axes[0, 0].text(0.5, 0.5, "not run", ha="center", va="center")
    fig.tight_layout()
    return fig
