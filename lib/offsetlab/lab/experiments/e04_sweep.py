"""E04's two new parts run and drawn: the kill case for every commit style at once, the
``max_poll_records`` sweep (both settings at once, ``repeats`` times), and the sweep's picture.

:func:`run_kills` and :func:`run_sweep` run their cases in threads (each case has its own
topic and group, the kills their own processes); :func:`plot_sweep` draws, per setting, the
offset of every handled record over time, failed commits as red crosses and the max poll
interval after each batch's start as a shaded band.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.experiments.e04_kill import STYLES, KillCase, run_kill
from offsetlab.lab.experiments.e04_max_poll import MaxPollCase, run_case

__all__ = ["run_kills", "run_sweep", "plot_sweep"]


def _parallel(jobs: dict[Any, Callable[[], Any]]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    errors: list[BaseException] = []

    def run(key: Any, job: Callable[[], Any]) -> None:
        try:
            out[key] = job()
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k, j), daemon=True) for k, j in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def run_kills(broker: BrokerHandle, folder: Path, *, n_messages: int, kill_after: int,
              timeout_s: float = 45.0) -> dict[str, KillCase]:
    """The kill case for every style in :data:`STYLES`, at once (returned in that order)."""
    got = _parallel({s: (lambda s=s: run_kill(broker, folder, style=s, n_messages=n_messages,
                                               kill_after=kill_after, timeout_s=timeout_s))
                      for s in STYLES})
    return {s: got[s] for s in STYLES}


def run_sweep(broker: BrokerHandle, *, records: Sequence[int], handler_s: float,
              max_poll_interval_ms: int, n_messages: int, budget_s: float,
              repeats: int) -> dict[int, list[MaxPollCase]]:
    """Every setting of ``records`` ``repeats`` times (the settings of one repeat at once)."""
    out: dict[int, list[MaxPollCase]] = {n: [] for n in records}
    for _ in range(repeats):
        got = _parallel({n: (lambda n=n: run_case(broker, max_poll_records=n, handler_s=handler_s,
                                                  max_poll_interval_ms=max_poll_interval_ms,
                                                  n_messages=n_messages, budget_s=budget_s))
                         for n in records})
        for n in records:
            out[n].append(got[n])
    return out


def plot_sweep(sweep: dict[int, list[MaxPollCase]]) -> Figure:
    """One panel per setting (its first repeat): handled offsets over time."""
    fig = Figure(figsize=(10, 2.6 * len(sweep)), layout="constrained")
    axes = fig.subplots(len(sweep), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (n, cases) in zip(axes, sweep.items(), strict=True):
        case = cases[0]
        interval = case.max_poll_interval_ms / 1000
        for start, _, _ in case.batches:
            ax.axvspan(start, start + interval, color="#deebf7", zorder=0)
        ts = [t for _, t in case.handled]
        offsets = [o for o, _ in case.handled]
        counts: dict[int, int] = {}
        colors = []
        for o in offsets:
            counts[o] = counts.get(o, 0) + 1
            colors.append("#3182bd" if counts[o] == 1 else "#e6550d")
        ax.scatter(ts, offsets, c=colors, s=14, zorder=2)
        for t, what in case.commits:
            if what != "ok":
                ax.plot([t], [case.n_messages], "x", color="#de2d26", markersize=8, zorder=3)
            else:
                ax.plot([t], [case.n_messages], "|", color="black", markersize=8, zorder=3)
        ax.set_ylim(-1, case.n_messages + 1.5)
        ax.set_ylabel("offset handled")
        longest = ", ".join(f"{max(c.batch_seconds(), default=0.0):.2f}" for c in cases)
        dups = ", ".join(str(c.duplicates()) for c in cases)
        ax.set_title(f"max_poll_records {n}: {n} x {case.handler_s} s a batch, max_poll_interval "
                     f"{interval:.1f} s (shaded after each batch's start); repeat 1 of {len(cases)}\n"
                     f"every repeat: longest batch {longest} s; handled again {dups}", fontsize=9)
    axes[-1].set_xlabel("seconds since the consumer started (blue: first handling, orange: again; "
                        "top: commits, | ok, x failed)")
    return fig
