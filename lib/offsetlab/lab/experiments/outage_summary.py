"""Reading an outage run: what E05 and E06 compare, from the recorded data only.

:func:`summarize` gives one row per pipeline (healthy-key throughput during the outage, the
longest healthy-key stall, latency of retried items, attempts, lost, duplicated and
out-of-order items, rebalances); :func:`throughput` the healthy-key items processed per second
over time; :func:`plot_outage` the pipelines on one time axis.
"""

from __future__ import annotations

from typing import Any

from offsetlab.lab.experiments.outage_run import OutageRun

__all__ = ["throughput", "summarize", "plot_outage"]


def _handled(run: OutageRun) -> Any:
    frame = run.timeline.to_frame()
    rows = frame[frame.what.isin(["processed", "failed"])].copy()
    rows["seq"] = [d["seq"] for d in rows.detail]
    rows["attempt"] = [d["attempt"] for d in rows.detail]
    rows["needs_dependency"] = [run.items[s].needs_dependency for s in rows.seq]
    rows["produced_t"] = [run.produce_t.get(s) for s in rows.seq]
    return rows


def throughput(run: OutageRun, bin_s: float = 0.5) -> Any:
    """Per pipeline and time bin: healthy-key items processed per second."""
    import pandas as pd

    rows = _handled(run)
    ok = rows[(rows.what == "processed") & ~rows.needs_dependency]
    end = float(rows.t.max()) if len(rows) else run.config.duration_s
    bins = [i * bin_s for i in range(int(end / bin_s) + 2)]
    out = []
    for name in run.pipelines:
        counts = pd.cut(ok[ok.who == name].t, bins, right=False).value_counts(sort=False)
        for interval, count in counts.items():
            out.append({"pipeline": name, "t": interval.left, "per_s": count / bin_s})
    return pd.DataFrame(out)


def summarize(run: OutageRun, *, on_time_s: float = 1.0) -> Any:
    """One row per pipeline: the numbers E05 and E06 compare (all from recorded data).

    - ``healthy_in_outage``: the healthy-key throughput the outage left: of the healthy-key
      items produced during the outage, the share processed within ``on_time_s`` of being
      produced (1.0: kept up; near 0: blocked; a backlog worked off later does not count);
    - ``healthy_stall_max_s``: the longest time no healthy-key item was processed, among gaps
      that overlap the outage (a blocked partition shows here first);
    - ``healthy_latency_max_s``: the slowest healthy item, produce to processed;
    - ``retried_latency_median_s`` / ``_max_s``: produce to processed, items that failed first;
    - ``max_attempts``; ``dead_lettered`` (read back from the dead-letter topic);
    - ``lost``: produced, never processed and not in the dead-letter topic;
    - ``duplicated``: processed more than once; ``keys_out_of_order``: keys whose items were
      processed (first time) in an order other than they were produced;
    - ``rebalances``: partitions revoked or lost while items were being produced and handled
      (bus pipelines, from their membership lane; ``NA`` for the raw pipelines, which assign
      their partitions and have no group membership).
    """
    import pandas as pd

    rows = _handled(run)
    frame = run.timeline.to_frame()
    lo, hi = run.outage_t
    healthy_in_window = [s for s, t in run.produce_t.items()
                         if lo <= t < hi and not run.items[s].needs_dependency]
    out = []
    for name in run.pipelines:
        mine = rows[rows.who == name]
        ok = mine[mine.what == "processed"]
        first_ok = ok.sort_values("t").drop_duplicates("seq")
        latency = (first_ok.t - first_ok.produced_t)
        failed_seqs = set(mine[mine.what == "failed"].seq)
        retried = latency[first_ok.seq.isin(failed_seqs)]
        healthy = latency[~first_ok.needs_dependency]
        on_time = set(first_ok[(first_ok.t - first_ok.produced_t) <= on_time_s].seq)
        in_outage = len(on_time.intersection(healthy_in_window))
        healthy_t = sorted(ok[~ok.needs_dependency].t)
        stall = max((b - a for a, b in zip(healthy_t, healthy_t[1:], strict=False)
                     if b > lo and a < hi), default=float("nan"))
        dead = set(run.dead_letters.get(name, []))
        processed = set(ok.seq)
        lost = [i.seq for i in run.items if i.seq not in processed and i.seq not in dead]
        order_changed = 0
        for _key, group in first_ok.sort_values("t").groupby("key"):
            if list(group.seq) != sorted(group.seq):
                order_changed += 1
        group_rows = frame[frame.who == f"{name}-group"]
        p0, p1 = run.producing_t
        rebalances: Any = pd.NA if group_rows.empty else int(
            ((group_rows.what.isin(["revoked", "lost"])) & (group_rows.t >= p0)
             & (group_rows.t <= p1)).sum())
        out.append({
            "pipeline": name,
            "produced": len(run.items),
            "processed": len(processed),
            "dead_lettered": len(dead),
            "lost": len(lost),
            "duplicated": int((ok.seq.value_counts() > 1).sum()),
            "max_attempts": int(mine.attempt.max()) if len(mine) else 0,
            "healthy_in_outage": in_outage / len(healthy_in_window) if healthy_in_window else float("nan"),
            "healthy_stall_max_s": stall,
            "healthy_latency_max_s": float(healthy.max()) if len(healthy) else float("nan"),
            "retried_latency_median_s": float(retried.median()) if len(retried) else float("nan"),
            "retried_latency_max_s": float(retried.max()) if len(retried) else float("nan"),
            "keys_out_of_order": order_changed,
            "rebalances": rebalances,
            "finished": run.finished.get(name, False),
        })
    return pd.DataFrame(out).set_index("pipeline")


def plot_outage(run: OutageRun, *, title: str | None = None) -> Any:
    """The pipelines of one run on one time axis (seconds since the run's timeline began):
    healthy-key items processed so far (a flat stretch is a blocked partition), latency of
    items that failed first (plotted when they were finally processed), and the order in
    which each pipeline processed the first dependent key's items (a point below the rising
    line is an item processed after a later one of its key). The outage is shaded."""
    from matplotlib.figure import Figure

    rows = _handled(run)
    ok = rows[rows.what == "processed"].sort_values("t")
    first_ok = ok.drop_duplicates(["who", "seq"])
    failed_rows = rows[rows.what == "failed"]
    failed = set(zip(failed_rows.who, failed_rows.seq, strict=True))
    fig = Figure(figsize=(10, 8), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    dependent_key = next((i.key for i in run.items if i.needs_dependency), None)
    markers = "osD^v<>"
    for n, name in enumerate(run.pipelines):
        mine = first_ok[first_ok.who == name]
        healthy = mine[~mine.needs_dependency]
        (line,) = axes[0].step(healthy.t, range(1, len(healthy) + 1), where="post", label=name,
                               lw=2.2 - 0.35 * n)
        color, marker = line.get_color(), markers[n % len(markers)]
        retried = mine[mine.seq.map(lambda s, n=name: (n, s) in failed).astype(bool)]
        axes[1].plot(retried.t, retried.t - retried.produced_t, marker, ms=4, color=color,
                     alpha=0.8, label=name)
        keyed = mine[mine.key == dependent_key]
        axes[2].plot(keyed.t, keyed.seq, marker, ms=4, color=color, alpha=0.8, label=name)
    for ax in axes:
        ax.axvspan(*run.outage_t, color="#fdd0a2", alpha=0.5, lw=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("healthy-key items\nprocessed (cumulative)")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].set_ylabel("retried item latency (s)")
    axes[2].set_ylabel(f"{dependent_key}: seq processed")
    axes[2].set_xlabel("seconds (shaded: dependency down)")
    axes[0].set_title(title or "the same outage, one time axis")
    return fig
