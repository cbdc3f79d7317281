"""E07's spread pictures: every repeat as a dot, beside the clocks and the outage.

- :func:`plot_main`: the first run of each strategy as timelines, and the spread under them
  (the notebook's main picture);
- :func:`plot_spread` / :func:`spread_into`: per strategy, the worker's longest pause (pausers) or the time until
  the broker stopped listing it (the sleeper), one dot per repeat, against the outage and
  the two timeouts;
- :func:`plot_clocks`: per clock case, when the broker log removed the sleeping worker (one
  dot per repeat, a cross at the sleep's end when it was not removed), against its session
  timeout and max poll interval (and the third member's arrival in a rebalancing case).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from offsetlab.lab.experiments.e07_findings import removal, removal_after_s

if TYPE_CHECKING:
    from offsetlab.lab.experiments.e07_clocks import ClockRun
    from offsetlab.lab.experiments.e07_core import PauseParams, ScenarioResult

__all__ = ["plot_main", "plot_spread", "spread_into", "plot_clocks"]

SESSION, POLL = "tab:blue", "tab:orange"


def _strip(ax: Any, rows: Sequence[tuple[str, Sequence[float | None]]], **style: Any) -> None:
    for y, (_, values) in enumerate(rows):
        xs = [v for v in values if v is not None]
        ax.scatter(xs, [y] * len(xs), zorder=3, **style)
    ax.set_yticks(range(len(rows)), [label for label, _ in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.invert_yaxis()


def plot_main(runs: Mapping[str, Sequence[ScenarioResult]],
              summaries: Mapping[str, Sequence[Mapping[str, Any]]], params: PauseParams,
              *, width: float = 11.0) -> Any:
    """The notebook's main picture: the first run of each strategy as timelines (as
    :func:`~offsetlab.lab.experiments.e07_summary.plot_comparison` draws them), and under
    them every run's pause, or the sleeper's removal, as dots (:func:`spread_into`)."""
    from matplotlib.figure import Figure

    from offsetlab.lab.experiments.e07_summary import timeline_frames
    from offsetlab.lab.plots import plot_timeline

    frames = timeline_frames([rs[0] for rs in runs.values()])
    heights = [h for *_, h in frames] + [0.5 * len(summaries) + 1.6]
    fig = Figure(figsize=(width, sum(heights) + 0.5), layout="constrained")
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    first = None
    for i, (r, frame, lanes, _) in enumerate(frames):
        ax = fig.add_subplot(grid[i], sharex=first)
        first = first or ax
        plot_timeline(frame, ax=ax, lanes=lanes,
                      title=f"{r.strategy}, first run (circles: message processed)")
    spread_into(fig.add_subplot(grid[-1]), summaries, params)
    return fig


def plot_spread(summaries: Mapping[str, Sequence[Mapping[str, Any]]], params: PauseParams,
                *, width: float = 11.0) -> Any:
    """:func:`spread_into` as a figure of its own."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 0.5 * len(summaries) + 1.6), layout="constrained")
    spread_into(fig.subplots(), summaries, params)
    return fig


def spread_into(ax: Any, summaries: Mapping[str, Sequence[Mapping[str, Any]]],
                params: PauseParams) -> None:
    """Per strategy, one dot per repeat: the longest pause, or (for a strategy that never
    paused) how long after its sleep began the broker stopped listing the worker."""
    rows = []
    for name, runs in summaries.items():
        if any(r["longest_pause_s"] is not None for r in runs):
            rows.append((f"{name}: longest pause", [r["longest_pause_s"] for r in runs]))
        else:
            rows.append((f"{name}: worker unlisted after", [r["worker_gone_after_s"] for r in runs]))
    _strip(ax, rows, color="black", s=22)
    ax.axvline(params.outage_s, color="grey", ls="--", label=f"outage {params.outage_s:g} s")
    ax.axvline(params.session_timeout_ms / 1000, color=SESSION, ls=":",
               label=f"session timeout {params.session_timeout_ms / 1000:g} s")
    ax.axvline(params.max_poll_interval_ms / 1000, color=POLL, ls=":",
               label=f"max poll interval {params.max_poll_interval_ms / 1000:g} s")
    ax.set_xlabel("seconds (one dot per repeat)")
    ax.set_xlim(left=0)
    ax.legend(loc="upper center", fontsize="small")
    ax.set_title("every run: pause lengths, and when the broker stopped listing the sleeper")


def plot_clocks(runs: Mapping[str, Sequence[ClockRun]], *, width: float = 11.0) -> Any:
    """Per case: the sleep (grey bar), both clocks (ticks), the third member's arrival
    (triangle), and the broker's removal of the worker, one dot per repeat."""
    from matplotlib.figure import Figure

    names = list(runs)
    fig = Figure(figsize=(width, 0.7 * len(names) + 1.6), layout="constrained")
    ax = fig.subplots()
    for y, name in enumerate(names):
        case = runs[name][0].case
        ax.barh(y, case.sleep_s, height=0.5, color="0.88", zorder=1)
        for x, color in ((case.session_timeout_ms / 1000, SESSION),
                         (case.max_poll_interval_ms / 1000, POLL)):
            ax.plot([x, x], [y - 0.3, y + 0.3], color=color, lw=3, zorder=2)
        for r in runs[name]:
            if r.joiner_at is not None and r.sleep_start is not None:
                ax.scatter([r.joiner_at - r.sleep_start], [y + 0.32], marker="v", color="tab:green",
                           s=18, zorder=3)
            if removal(r) is None:
                ax.scatter([case.sleep_s], [y], marker="x", color="red", zorder=4)
            else:
                ax.scatter([removal_after_s(r)], [y], color="black", s=22, zorder=4)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.invert_yaxis()
    ax.plot([], [], color=SESSION, lw=3, label="session timeout")
    ax.plot([], [], color=POLL, lw=3, label="max poll interval")
    ax.scatter([], [], color="black", s=22, label="broker log: worker removed")
    ax.scatter([], [], marker="v", color="tab:green", s=18, label="third member joins")
    ax.set_xlabel("seconds since the worker's handler began to sleep (grey: the sleep)")
    ax.set_xlim(left=0)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title("which clock removed the sleeping worker, read from the broker log")
    return fig
