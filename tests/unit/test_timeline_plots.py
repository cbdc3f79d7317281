"""The timeline plot and the sweep bars: what is drawn, read back from the matplotlib objects."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure
from offsetlab.lab.plots import SPAN_COLORS, plot_bars, plot_timeline
from offsetlab.lab.timeline import Timeline


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _scenario() -> pd.DataFrame:
    clock = FakeClock()
    tl = Timeline(clock=clock)
    tl.record("consumer-1", "join", phase="start", at=0.0)
    tl.record("consumer-1", "join", phase="end", at=2.0)
    tl.record("producer", "produced", partition=0, offset=0, at=2.5)
    tl.record("producer", "produced", partition=1, offset=0, at=3.0)
    tl.record("consumer-1", "consumed", partition=0, offset=0, at=2.6)
    tl.record("consumer-2", "consumed", partition=1, offset=0, at=3.1)
    tl.record("consumer-2", "pause", phase="start", at=3.5)  # never resumed
    tl.record("consumer-1", "assigned", at=2.0, detail={"partitions": [0]})
    tl.record("consumer-2", "crash", at=4.0, detail={"error": "ValueError: x"})
    tl.record("consumer-1", "rebalance", at=4.5)
    tl.record("consumer-1", "stop", at=5.0)
    return tl.to_frame()


def _bars(ax) -> list[tuple[float, float, tuple[float, ...]]]:
    """(x start, x end, facecolor) of every broken_barh rectangle."""
    out = []
    for coll in ax.collections:
        if isinstance(coll, PolyCollection) and not isinstance(coll, PathCollection):
            for path, color in zip(coll.get_paths(), coll.get_facecolors(), strict=False):
                xs = path.vertices[:, 0]
                out.append((float(xs.min()), float(xs.max()), tuple(np.round(color, 3))))
    return out


def test_one_lane_per_client_in_order_of_appearance() -> None:
    fig = plot_timeline(_scenario(), title="E01")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["consumer-1", "producer", "consumer-2"]
    assert ax.get_title() == "E01"
    fig2 = plot_timeline(_scenario(), lanes=["producer", "consumer-2"])
    assert [t.get_text() for t in fig2.axes[0].get_yticklabels()] == ["producer", "consumer-2"]


def test_intervals_are_bars_and_an_open_one_runs_to_the_last_event() -> None:
    from matplotlib.colors import to_rgba

    ax = plot_timeline(_scenario()).axes[0]
    bars = sorted(_bars(ax))
    join = tuple(np.round(to_rgba(SPAN_COLORS["join"]), 3))
    pause = tuple(np.round(to_rgba(SPAN_COLORS["pause"]), 3))
    assert bars == [(0.0, 2.0, join), (3.5, 5.0, pause)]


def test_messages_errors_and_legend() -> None:
    ax = plot_timeline(_scenario(), label_offsets=True).axes[0]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    points = sorted(tuple(map(float, p)) for c in scatters for p in c.get_offsets())
    # 2 produced + 2 consumed + 1 crash + 1 other instant (stop): lanes are y = 0, 1, 2
    assert (2.5, 1.0) in points and (3.0, 1.0) in points
    assert (2.6, 0.0) in points and (3.1, 2.0) in points
    assert (4.0, 2.0) in points and (5.0, 0.0) in points
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"join", "pause", "produced", "consumed", "crash / error", "assigned", "rebalance",
            "partition 0", "partition 1"} <= labels
    offsets_written = [t.get_text() for t in ax.texts if t.get_text().isdigit()]
    assert sorted(offsets_written) == ["0", "0", "0", "0"]
    # the rebalance is a line across the whole plot: x fixed, y in axes coordinates 0..1
    full = [line for line in ax.lines if list(line.get_ydata()) == [0, 1]]
    assert [float(line.get_xdata()[0]) for line in full] == [4.5]


def test_an_empty_timeline_says_so_and_an_existing_axes_is_used() -> None:
    for empty in (Timeline().to_frame(), Timeline()):  # a frame, or the timeline itself
        fig = plot_timeline(empty)
        assert "no events recorded" in [t.get_text() for t in fig.axes[0].texts]
    host = Figure()
    ax = host.add_subplot()
    assert plot_timeline(_scenario(), ax=ax) is host


def test_plot_bars_draws_each_value() -> None:
    fig = plot_bars([("E05", 12), ("E06", 3.5)], title="retries")
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [12, 3.5]
    sweep = pd.DataFrame({"gap_s": [0, 1, 0, 1], "strategy": ["a", "a", "b", "b"],
                          "latency_s": [1.0, 2.0, 3.0, 4.0]})
    fig = plot_bars(sweep, "gap_s", "latency_s", hue="strategy")
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    assert heights == [1.0, 2.0, 3.0, 4.0]
    assert fig.axes[0].get_legend().get_title().get_text() == "strategy"
