"""The experiments' pictures: a timeline with one lane per client, and bars for sweeps.

Both build a :class:`matplotlib.figure.Figure` directly (no pyplot state, so nothing is shown
twice and nothing leaks between cells) unless you pass an ``ax``; both return the Figure. In a
notebook, make the figure the cell's last expression (or ``display(fig)``) and save it with
``lab.save_figure(name, fig)``.

:func:`plot_timeline` reads a frame from :meth:`offsetlab.lab.timeline.Timeline.to_frame`:

- a lane per ``who`` (order of first appearance unless ``lanes`` is given);
- intervals (rows with ``phase`` start/end, paired per lane and ``what``): ``join`` blue,
  ``pause`` orange, any other grey; an interval without an end runs to the last event;
- ``produced`` triangles and ``consumed`` circles coloured by partition (offsets written
  beside them with ``label_offsets=True``); ``produce_failed`` hollow triangles;
- a red X for every ``what`` in :data:`ERROR_EVENTS` (``crash``, ``error``, ...);
- ``assigned`` / ``revoked`` / ``lost`` / ``rebalance`` as short vertical strokes on the lane,
  and a dotted vertical line across all lanes for each kind in ``group_lines`` (default
  ``rebalance`` and ``lost``: events that concern the whole group);
- ``commit`` as a small black tick; any other instant as a grey dot with its name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

__all__ = ["plot_timeline", "plot_bars", "SPAN_COLORS", "ERROR_EVENTS", "MEMBERSHIP_EVENTS"]

SPAN_COLORS = {"join": "#9ecae1", "pause": "#fdae6b"}
_OTHER_SPAN = "#d9d9d9"
ERROR_EVENTS = frozenset({"crash", "error", "failed", "handler_error", "fatal"})
MEMBERSHIP_EVENTS = {"assigned": "#31a354", "revoked": "#636363", "lost": "#de2d26",
                     "rebalance": "#756bb1"}
_MESSAGE_MARKERS = {"produced": "^", "consumed": "o"}
_LANE_HEIGHT = 0.6


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        fig = ax.get_figure()
        assert isinstance(fig, Figure)
        return fig, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _partition_color(partition: Any) -> Any:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    if partition is None or partition != partition:  # None or NaN/NA
        return "#444444"
    return cmap(int(partition) % 10)


def _is_missing(value: Any) -> bool:
    try:
        return value is None or bool(value != value)
    except (TypeError, ValueError):
        return False


def _intervals(rows: pd.DataFrame, t_end: float) -> list[tuple[str, str, float, float, bool]]:
    """(who, what, start, end, closed) for every start/end pair; nested pairs of the same
    lane and kind close innermost first; an unclosed start runs to ``t_end``."""
    open_: dict[tuple[str, str], list[float]] = {}
    out: list[tuple[str, str, float, float, bool]] = []
    for who, what, phase, t in zip(rows.who, rows.what, rows.phase, rows.t, strict=True):
        key = (str(who), str(what))
        if phase == "start":
            open_.setdefault(key, []).append(float(t))
        elif phase == "end":
            starts = open_.get(key)
            start = starts.pop() if starts else None
            # an end without a start (recording began mid-interval): from the first event
            out.append((key[0], key[1], float(t) if start is None else start, float(t), True))
    for (who, what), starts in open_.items():
        out.extend((who, what, start, t_end, False) for start in starts)
    return out


def plot_timeline(frame: pd.DataFrame | Any, ax: Axes | None = None, *,
                  lanes: Sequence[str] | None = None, label_offsets: bool = False,
                  title: str | None = None, annotate_other: bool = True,
                  group_lines: Iterable[str] = ("rebalance", "lost"),
                  figsize: tuple[float, float] | None = None) -> Figure:
    """Draw a timeline (a :class:`~offsetlab.lab.timeline.Timeline` or its frame): one lane
    per client, time on the x axis (seconds)."""
    if hasattr(frame, "to_frame") and not hasattr(frame, "columns"):
        frame = frame.to_frame()
    lane_names = list(lanes) if lanes is not None else list(dict.fromkeys(map(str, frame.who)))
    height = max(2.2, 0.7 * len(lane_names) + 1.4)
    fig, ax = _axes(ax, figsize or (10.0, height))
    if frame.empty or not lane_names:
        ax.text(0.5, 0.5, "no events recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
        if title:
            ax.set_title(title)
        return fig
    y = {name: i for i, name in enumerate(lane_names)}
    group_lines = frozenset(group_lines)
    frame = frame[frame.who.astype(str).isin(y)]
    t_end = float(frame.t.max()) if len(frame) else 0.0
    legend: dict[str, Any] = {}

    spans = frame[frame.phase.isin(["start", "end"])]
    for who, what, start, end, closed in _intervals(spans, t_end):
        color = SPAN_COLORS.get(what, _OTHER_SPAN)
        ax.broken_barh([(start, max(end - start, t_end * 0.002))],
                       (y[who] - _LANE_HEIGHT / 2, _LANE_HEIGHT), facecolors=color,
                       edgecolor="none" if closed else "#999999",
                       linestyle="-" if closed else "--", zorder=1)
        legend.setdefault(f"span:{what}", Patch(facecolor=color, label=what))

    instants = frame[~frame.phase.isin(["start", "end"])]
    partitions_seen: set[int] = set()
    for what, marker in _MESSAGE_MARKERS.items():
        rows = instants[instants.what == what]
        if rows.empty:
            continue
        ys = [y[str(w)] for w in rows.who]
        colors = [_partition_color(p) for p in rows.partition]
        ax.scatter(rows.t, ys, marker=marker, c=colors, s=46, zorder=3, edgecolors="black",
                   linewidths=0.4)
        partitions_seen.update(int(p) for p in rows.partition if not _is_missing(p))
        legend.setdefault(f"marker:{what}", Line2D([], [], marker=marker, linestyle="", color="grey",
                                                  markeredgecolor="black", label=what))
        if label_offsets:
            for t, yy, offset in zip(rows.t, ys, rows.offset, strict=True):
                if not _is_missing(offset):
                    ax.annotate(str(int(offset)), (t, yy), xytext=(0, 7), textcoords="offset points",
                                ha="center", fontsize=7)

    failed = instants[instants.what == "produce_failed"]
    if not failed.empty:
        ax.scatter(failed.t, [y[str(w)] for w in failed.who], marker="^", facecolors="none",
                   edgecolors="red", s=46, zorder=3)
        legend.setdefault("marker:produce_failed", Line2D([], [], marker="^", linestyle="",
                                                         markerfacecolor="none", color="red",
                                                         label="produce failed"))

    errors = instants[instants.what.isin(ERROR_EVENTS)]
    if not errors.empty:
        ax.scatter(errors.t, [y[str(w)] for w in errors.who], marker="X", color="red", s=110,
                   zorder=4, edgecolors="black", linewidths=0.5)
        legend.setdefault("marker:error", Line2D([], [], marker="X", linestyle="", color="red",
                                                 label="crash / error"))

    for what, color in MEMBERSHIP_EVENTS.items():
        rows = instants[instants.what == what]
        if rows.empty:
            continue
        ys = [y[str(w)] for w in rows.who]
        ax.vlines(rows.t, [v - _LANE_HEIGHT / 2 for v in ys], [v + _LANE_HEIGHT / 2 for v in ys],
                  colors=color, linewidth=2, zorder=2)
        if what in group_lines:
            for t in rows.t:
                ax.axvline(float(t), color=color, linestyle=":", linewidth=0.8, zorder=0)
        legend.setdefault(f"member:{what}", Line2D([], [], color=color, linewidth=2, label=what))

    commits = instants[instants.what == "commit"]
    if not commits.empty:
        ax.scatter(commits.t, [y[str(w)] + 0.22 for w in commits.who], marker="|", color="black",
                   s=40, zorder=3)
        legend.setdefault("marker:commit", Line2D([], [], marker="|", linestyle="", color="black",
                                                  label="commit"))

    known = set(_MESSAGE_MARKERS) | ERROR_EVENTS | set(MEMBERSHIP_EVENTS) | {"commit", "produce_failed"}
    other = instants[~instants.what.isin(known)]
    if not other.empty:
        ax.scatter(other.t, [y[str(w)] for w in other.who], marker="D", color="#969696", s=18,
                   zorder=2)
        if annotate_other:
            for t, who, what in zip(other.t, other.who, other.what, strict=True):
                ax.annotate(str(what), (t, y[str(who)]), xytext=(2, -11), textcoords="offset points",
                            fontsize=6.5, color="#525252", rotation=-30)

    for p in sorted(partitions_seen):
        legend[f"partition:{p}"] = Patch(facecolor=_partition_color(p), label=f"partition {p}")

    ax.set_yticks(range(len(lane_names)), lane_names)
    ax.set_ylim(len(lane_names) - 0.5, -0.5)  # first lane on top
    ax.set_xlabel("seconds since start")
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlim(left=min(0.0, float(frame.t.min())) if len(frame) else 0.0,
                right=max(t_end * 1.03, 0.1))
    if legend:
        ax.legend(handles=list(legend.values()), loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return fig


def plot_bars(data: pd.DataFrame | Iterable[tuple[Any, float]], x: str | None = None,
              y: str | None = None, *, hue: str | None = None, ax: Axes | None = None,
              title: str | None = None, xlabel: str | None = None, ylabel: str | None = None,
              horizontal: bool = False, label_values: bool = True,
              figsize: tuple[float, float] = (7.0, 3.2)) -> Figure:
    """Bars for a sweep: ``y`` per ``x`` (grouped by ``hue`` if given).

    ``data`` is a DataFrame with columns ``x``, ``y`` (and ``hue``), or an iterable of
    ``(label, value)`` pairs. Values are written on the bars unless ``label_values=False``.
    """
    import pandas as pd

    if not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(list(data), columns=["label", "value"])
        x, y = "label", "value"
    if x is None or y is None:
        raise ValueError("plot_bars needs x= and y= column names for a DataFrame")
    fig, ax = _axes(ax, figsize)
    table = data.pivot_table(index=x, columns=hue, values=y, aggfunc="mean", sort=False) if hue \
        else data.set_index(x)[[y]]
    table.plot(kind="barh" if horizontal else "bar", ax=ax, legend=bool(hue), rot=0)
    if label_values:
        for container in ax.containers:
            ax.bar_label(container, fmt="%g", fontsize=7, padding=1)  # type: ignore[arg-type]
    ax.set_xlabel(xlabel if xlabel is not None else (y if horizontal else x))
    ax.set_ylabel(ylabel if ylabel is not None else (x if horizontal else y))
    if hue:
        ax.legend(title=hue, fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return fig
