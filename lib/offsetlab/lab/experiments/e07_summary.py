"""E07's reading of a run: the numbers compared (:func:`summarize`) and the picture
(:func:`plot_comparison`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from offsetlab.lab.experiments.e07_watch import listed
from offsetlab.lab.timeline import deliveries

if TYPE_CHECKING:
    from offsetlab.lab.experiments.e07_core import ScenarioResult

__all__ = ["MEMBERSHIP", "LANES", "summarize", "timeline_frames", "plot_comparison"]

#: timeline kinds that mean "the group's assignment changed for this member"
MEMBERSHIP = ("assigned", "revoked", "lost")


def summarize(result: ScenarioResult) -> dict[str, Any]:
    """The numbers E07 compares, from the timeline and what was read back from the broker.

    - ``rebalances``: assignments a member received between the group settling and the end
      of the story (each eager rebalance hands every member an assignment, so the busiest
      member's count is the group's); the members leaving at the end are not counted;
    - ``membership_changes``: assigned/revoked/lost rows of both members in that window;
    - ``processed``: handler completions; ``duplicates``: messages processed more than once;
      ``lost``: produced but never processed; ``max_attempts``: most deliveries of one message
      to the worker;
    - ``commit_failed``: refused commits (and their error classes);
    - ``fewest_members`` / ``group_states``: the broker's view in that window
      (:class:`GroupWatcher`): the fewest members it listed (``None`` when the broker's
      answer could not be read), and the states it reported;
    - ``worker_gone_after_s``: seconds from the worker's first sleep or pause to the broker
      no longer listing it (``None`` if it stayed listed);
    - ``longest_pause_s`` / ``longest_sleep_s``: the worker's longest pause / sleep interval;
    - ``committed_at_end``: the group's committed offsets equal the log end offsets.
    """
    frame = result.timeline.to_frame()
    end = result.finished_t or float("inf")
    after = frame[(frame.t >= result.settled_t) & (frame.t <= end)]  # not the members leaving
    membership = after[after.what.isin(MEMBERSHIP) & after.who.isin(["worker", "peer"])]
    processed = deliveries(frame, consumed="processed")
    delivered = deliveries(frame[frame.who != "peer"], consumed="consumed")
    failed = after[after.what == "commit_failed"]
    before = [v for v in result.group_views if v[0] < result.settled_t][-1:]  # in effect then
    window = before + [v for v in result.group_views if result.settled_t <= v[0] <= end]
    return {
        "strategy": result.strategy,
        "rebalances": int((membership.what == "assigned").groupby(membership.who).sum().max()
                          if len(membership) else 0),
        "membership_changes": len(membership),
        "produced": int((frame.what == "produced").sum()),
        "processed": int((frame.what == "processed").sum()),
        "duplicates": int((processed.consumed > 1).sum()),
        "lost": int((processed.consumed == 0).sum()),
        "max_attempts": int(delivered.consumed.max()) if len(delivered) else 0,
        "commit_failed": len(failed),
        "commit_errors": sorted({d["error"] for d in failed.detail if isinstance(d, dict)}),
        "fewest_members": min((len(m) for _, _, m in window), default=None),
        "group_states": sorted({state for _, state, _ in window}),
        "worker_gone_after_s": _gone_after(after),
        "longest_pause_s": _longest(after, "pause"),
        "longest_sleep_s": _longest(after, "sleep"),
        "committed_at_end": bool(result.end_offsets) and all(
            result.committed.get(p) == o for p, o in result.end_offsets.items() if o),
        "errors": sorted(result.errors),
    }



def _starts(frame: Any, what: str) -> list[float]:
    rows = frame[(frame.who == "worker") & (frame.what == what)]
    return [float(t) for t in rows[rows.phase == "start"].t]


def _longest(frame: Any, what: str) -> float | None:
    """The worker's longest ``what`` interval (an unclosed one runs to the frame's end)."""
    rows = frame[(frame.who == "worker") & (frame.what == what)]
    longest, start = None, None
    for phase, t in zip(rows.phase, rows.t, strict=True):
        if phase == "start" and start is None:
            start = float(t)
        elif phase == "end" and start is not None:
            longest, start = max(longest or 0.0, float(t) - start), None
    if start is not None and len(frame):
        longest = max(longest or 0.0, float(frame.t.max()) - start)
    return None if longest is None else round(longest, 3)


def _gone_after(frame: Any) -> float | None:
    began = sorted(_starts(frame, "sleep") + _starts(frame, "pause"))
    if not began:
        return None
    gone = frame[(frame.who == listed("worker")) & (frame.what == "member") & (frame.phase == "end")
                 & (frame.t >= began[0])]
    return None if gone.empty else round(float(gone.t.iloc[0]) - began[0], 3)


#: lane order of the pictures (lanes a strategy did not use are left out)
LANES = ("producer", "dependency", "breaker", "worker", listed("worker"), "peer", listed("peer"),
         "joiner", listed("joiner"))


def timeline_frames(results: list[ScenarioResult]) -> list[tuple[ScenarioResult, Any, list[str], float]]:
    """Per result: the frame to draw (processed rows drawn as circles), its lanes, and a
    height for its panel (inches)."""
    out = []
    for r in results:
        frame = r.timeline.to_frame()
        frame = frame[frame.what != "consumed"].copy()
        frame.loc[frame.what == "processed", "what"] = "consumed"
        lanes = [lane for lane in LANES if lane in set(frame.who)]
        out.append((r, frame, lanes, 0.55 * len(lanes) + 0.9))
    return out


def plot_comparison(results: list[ScenarioResult], *, width: float = 11.0) -> Any:
    """One timeline per strategy, stacked on a shared time axis (a matplotlib Figure).

    Circles are messages *processed* (the handler's work done; a message processed twice
    shows twice); the ``(listed)`` lanes are the broker's view of membership (grey
    ``member`` bars); orange bars are pauses; grey ``sleep`` and ``outage`` bars the worker's
    sleeping handler and the dependency's outage."""
    from matplotlib.figure import Figure

    from offsetlab.lab.plots import plot_timeline

    frames = timeline_frames(results)
    heights = [h for *_, h in frames]
    fig = Figure(figsize=(width, sum(heights) + 0.5), layout="constrained")
    axes = fig.subplots(len(results), 1, sharex=True, height_ratios=heights, squeeze=False)[:, 0]
    for ax, (r, frame, lanes, _) in zip(axes, frames, strict=True):
        plot_timeline(frame, ax=ax, lanes=lanes,
                      title=f"{r.strategy} (circles: message processed)")
    return fig
