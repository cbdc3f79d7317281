"""E01's figures beside the main timeline: repeated measurements with their spread, and the
per-member timelines of a member joining a consuming group (:mod:`.e01_rebalance`)."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from offsetlab.lab.plots import plot_timeline

__all__ = ["plot_rebalance", "plot_spread"]


def plot_spread(groups: Mapping[str, Sequence[float]], *, ax: Axes | None = None,
                title: str | None = None, xlabel: str = "seconds",
                marks: Mapping[str, float] | None = None, log: bool = False,
                figsize: tuple[float, float] = (8.0, 3.0)) -> Figure:
    """One row per label: every value as a dot (all repeats), the median as a bar; ``marks``
    draws labelled vertical lines (a timeout, a delay) for reference."""
    if ax is None:
        fig = Figure(figsize=figsize)
        ax = fig.subplots()
    else:
        fig = ax.get_figure()  # type: ignore[assignment]
    labels = list(groups)
    for i, label in enumerate(labels):
        values = [v for v in groups[label] if v is not None]
        if not values:
            continue
        ax.scatter(values, [i] * len(values), s=28, color="#3182bd", alpha=0.75, zorder=3,
                   edgecolors="black", linewidths=0.3)
        med = statistics.median(values)
        ax.plot([med, med], [i - 0.3, i + 0.3], color="#de2d26", linewidth=2.2, zorder=4)
        ax.annotate(f"{med:.3g}", (med, i + 0.3), xytext=(3, 0), textcoords="offset points",
                    fontsize=7, color="#de2d26", va="bottom")
    for name, x in (marks or {}).items():
        ax.axvline(x, color="#636363", linestyle=":", linewidth=1)
        ax.annotate(name, (x, -0.5), xytext=(2, -3), textcoords="offset points",
                    fontsize=7, color="#636363", rotation=90, va="top", ha="left")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"{xlabel} (dots: every repeat; red bar: median)")
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_rebalance(frame: pd.DataFrame, summary: Mapping[str, Any], *, ax: Axes | None = None,
                   title: str | None = None, before_s: float = 1.0, after_s: float = 1.5) -> Figure:
    """Members A, B, C around the rebalance of one run: handled messages (coloured by
    partition), revocations and assignments; the window is the summary's ``rebalance``
    (C's subscribe to C's first partitions) widened by ``before_s``/``after_s``."""
    start, end = summary["rebalance"]
    shown = frame[(frame.t >= start - before_s) & (frame.t <= end + after_s)
                  & frame.who.isin(["A", "B", "C"])].copy()
    shown.loc[shown.what == "handled", "what"] = "consumed"
    shown["t"] = shown.t - start
    fig = plot_timeline(shown, ax=ax, lanes=["A", "B", "C"], title=title, annotate_other=True)
    (ax or fig.axes[0]).set_xlabel("seconds since C subscribed")
    return fig
