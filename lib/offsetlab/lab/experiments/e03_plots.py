"""E03's (and E04's) tables and pictures of :class:`~offsetlab.lab.experiments.e03_scenario.
ScenarioResult` lists: every attempt (:func:`attempts_frame`), deliveries per message
(:func:`deliveries_frame`), the scenarios' timelines stacked (:func:`plot_timelines`), and a
grid of attempts by message (:func:`plot_attempts`). pandas and matplotlib are imported when
called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from offsetlab.lab.experiments.e03_scenario import ScenarioResult

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["attempts_frame", "deliveries_frame", "plot_timelines", "plot_attempts"]


def attempts_frame(results: list[ScenarioResult]) -> pd.DataFrame:
    """Every attempt of every scenario: delivered, processed, failed, committed after."""
    import pandas as pd

    return pd.DataFrame([row for r in results for row in r.attempts_rows()])


def deliveries_frame(results: list[ScenarioResult]) -> pd.DataFrame:
    """Per scenario and message: times delivered (handed to the handler) and processed."""
    import pandas as pd

    rows = []
    for r in results:
        delivered, processed = r.delivery_counts(), r.processed_counts()
        for m in r.messages:
            rows.append({"scenario": r.name, "message": m.number, "partition": m.partition,
                         "delivered": delivered[m.number], "processed": processed[m.number],
                         "lost": m.number in r.lost()})
    return pd.DataFrame(rows)


def plot_timelines(results: list[ScenarioResult], *, width: float = 10.0) -> Figure:
    """One timeline (:func:`~offsetlab.lab.plots.plot_timeline`) per scenario, stacked."""
    from matplotlib.figure import Figure

    from offsetlab.lab.plots import plot_timeline

    heights = [max(1.6, 0.55 * r.timeline.to_frame().who.nunique() + 1.0) for r in results]
    fig = Figure(figsize=(width, sum(heights)), layout="constrained")
    axes = fig.subplots(len(results), 1, height_ratios=heights, squeeze=False)[:, 0]
    for ax, r in zip(axes, results, strict=True):
        plot_timeline(r.timeline.to_frame(), ax=ax, title=r.name, annotate_other=False)
    return fig


_CELL_STYLE = {"processed": ("o", "#31a354"), "failed": ("X", "#de2d26"),
               "delivered, not processed": ("o", "#d9d9d9")}


def plot_attempts(results: list[ScenarioResult], *, width: float = 10.0) -> Figure:
    """Per scenario, a grid of attempts (rows) by message (columns): processed (green),
    failed (red cross), delivered but not processed (grey); the committed position after each
    attempt written on the right, messages lost at the end marked in the column header."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    heights = [0.45 * max(1, len(r.attempts)) + 0.9 for r in results]
    fig = Figure(figsize=(width, sum(heights)), layout="constrained")
    axes = fig.subplots(len(results), 1, height_ratios=heights, squeeze=False)[:, 0]
    for ax, r in zip(axes, results, strict=True):
        lost = set(r.lost())
        for y, a in enumerate(r.attempts):
            for n in a.delivered:
                state = ("failed" if n in a.failed else "processed" if n in a.processed
                         else "delivered, not processed")
                marker, color = _CELL_STYLE[state]
                ax.scatter([n], [y], marker=marker, color=color, s=110, edgecolors="black",
                           linewidths=0.4, zorder=3)
            ax.annotate(f"committed {r.next_message(a.committed)}", (1.0, y),
                        xycoords=("axes fraction", "data"), xytext=(6, 0),
                        textcoords="offset points", va="center", fontsize=8)
        numbers = [m.number for m in r.messages]
        ax.set_xticks(numbers, [f"{m.number}\n(p{m.partition})" + ("\nLOST" if m.number in lost else "")
                                for m in r.messages], fontsize=8)
        for label, m in zip(ax.get_xticklabels(), r.messages, strict=True):
            if m.number in lost:
                label.set_color("#de2d26")
        ax.set_yticks(range(len(r.attempts)), [f"{a.attempt}: {a.who}" for a in r.attempts], fontsize=8)
        ax.set_xlim(min(numbers) - 0.6, max(numbers) + 0.6)
        ax.set_ylim(len(r.attempts) - 0.5, -0.5)
        ax.grid(alpha=0.3)
        ax.set_title(r.name, fontsize=10, loc="left")
    axes[0].legend(handles=[Line2D([], [], marker=m, color=c, linestyle="", markeredgecolor="black", label=k)
                            for k, (m, c) in _CELL_STYLE.items()],
                   loc="lower left", bbox_to_anchor=(0.0, 1.15), ncol=3, fontsize=8, frameon=False)
    axes[-1].set_xlabel("message (partition)")
    return fig
