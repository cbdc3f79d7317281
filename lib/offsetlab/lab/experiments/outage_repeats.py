"""The outage run ``repeats`` times, and the spread of what E05 and E06 time.

:func:`run_repeats` runs :func:`~offsetlab.lab.experiments.outage_run.run_outage` one repeat
after the other, each with fresh pipelines (own topics and groups) and a fresh
:class:`~offsetlab.lab.experiments.outage_dependency.Dependency`, so that the repeats do not
share a broker-side state or a dependency; :func:`spreads` turns the per-repeat summaries into
``{pipeline: {"values", "median", "min", "max"}}`` per timed column
(:func:`offsetlab.lab.findings.spread`, what ``lab.measure_repeats`` saves);
:func:`plot_spread` shows every value of every repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.experiments.outage_dependency import Dependency
from offsetlab.lab.experiments.outage_run import OutageRun, run_outage
from offsetlab.lab.experiments.outage_scenario import OutageConfig, Pipeline
from offsetlab.lab.experiments.outage_summary import summarize
from offsetlab.lab.findings import spread

__all__ = ["TIMED", "run_repeats", "all_summaries", "spreads", "plot_spread"]

#: the timed columns of :func:`~offsetlab.lab.experiments.outage_summary.summarize` that
#: findings and narratives rely on, with their axis labels
TIMED: dict[str, str] = {
    "healthy_in_outage": "healthy items on time\nduring the outage (share)",
    "healthy_stall_max_s": "longest healthy-key\nstall (s)",
    "retried_latency_max_s": "slowest retried\nitem (s)",
}


def run_repeats(broker: BrokerHandle, make_pipelines: Callable[[Dependency], Sequence[Pipeline]],
                config: OutageConfig, repeats: int) -> list[OutageRun]:
    """``repeats`` outage runs, one after the other; ``make_pipelines(dependency)`` builds a
    fresh set of pipelines for each."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be >= 1")
    runs = []
    for _ in range(repeats):
        with Dependency() as dependency:
            runs.append(run_outage(broker, list(make_pipelines(dependency)), dependency, config))
    return runs


def spreads(summaries: Sequence[Any], column: str) -> dict[str, dict[str, Any]]:
    """``{pipeline: spread of column over the repeats}`` (values in repeat order; NaN left out)."""
    pipelines = list(summaries[0].index)
    return {name: spread(float(s.loc[name, column]) for s in summaries
                         if s.loc[name, column] == s.loc[name, column])
            for name in pipelines}


def spread_table(spread_by_column: dict[str, dict[str, dict[str, Any]]],
                 extra: dict[str, dict[str, Any]] | None = None) -> Any:
    """``{column: {pipeline: spread}}`` as a table of ``median [min-max]`` per pipeline
    (``none`` where a pipeline had no value in any repeat), plus ``extra`` columns as given."""
    import pandas as pd

    def text(s: dict[str, Any]) -> str:
        return f"{s['median']:.2f} [{s['min']:.2f}-{s['max']:.2f}]" if s["values"] else "none"

    table = pd.DataFrame({column: {name: text(s) for name, s in per.items()}
                          for column, per in spread_by_column.items()})
    for column, values in (extra or {}).items():
        table[column] = pd.Series(values)
    return table.rename_axis("median [min-max] of the repeats")


def plot_spread(summaries: Sequence[Any], *, title: str | None = None) -> Any:
    """One panel per timed column: every repeat's value per pipeline (dots) and the median
    (a bar), so the spread the findings' medians come from is visible."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4), layout="constrained")
    axes = fig.subplots(1, len(TIMED))
    pipelines = list(summaries[0].index)
    for ax, (column, label) in zip(axes, TIMED.items(), strict=True):
        s = spreads(summaries, column)
        for i, name in enumerate(pipelines):
            values = s[name]["values"]
            ax.plot([i] * len(values), values, "o", ms=5, alpha=0.7, color=f"C{i}")
            if s[name]["median"] is not None:
                ax.hlines(s[name]["median"], i - 0.3, i + 0.3, color=f"C{i}", lw=2.5)
        ax.set_xticks(range(len(pipelines)), pipelines, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title or f"{len(summaries)} repeats: every value (dots) and the median (bar)")
    return fig


def all_summaries(runs: Sequence[OutageRun]) -> list[Any]:
    return [summarize(r) for r in runs]
