"""E07: pause while a dependency is down, or sleep in the handler (the seed's naive way).

The seed wanted the Kafka read to "delay fairly long for dependency down (minutes)" and
wondered whether ``pause()`` would do it without session timeouts. Every scenario here runs
the same story on one topic with ``partitions`` partitions and a group of two members:

- **worker**: its handler calls a dependency that, as the worker sees it, goes down for
  ``outage_s`` seconds (longer than the session timeout *and* the max poll interval) right
  before the messages are produced (a network partition between this instance and the
  dependency: :class:`OutageDependency`);
- **peer**: another member of the same group whose handler needs nothing; it is the witness
  that sees partitions move when the worker drops out of the group.

The strategies (one function each, all returning a :class:`ScenarioResult`):

- :func:`run_raw_sleep` -- raw kafka-python, the handler sleeps until the dependency is back
  and does not poll. Which clock removes it is measured, not assumed, in
  :mod:`~offsetlab.lab.experiments.e07_clocks` (the broker's log: with kafka-python 3.0.12 it
  is the client's own ``LeaveGroup`` at ``max_poll_interval_ms``); the peer gets the worker's
  partitions and processes them again; the worker's ``commit()`` then fails.
- :func:`run_raw_pause` -- raw kafka-python: on a failed call the worker pauses the partition,
  seeks back to the record, and keeps polling; it resumes when the dependency answers again.
- :func:`run_runner_breaker` -- the adapter's :class:`~offsetlab.bus.runner.ConsumerRunner`
  with a :class:`~offsetlab.bus.breaker.CircuitBreaker` around the dependency: open ->
  pause (the runner keeps polling), half-open (alive check passed) -> resume, the next
  delivery is the trial call.

Everything is recorded on a :class:`~offsetlab.lab.timeline.Timeline` (lanes ``producer``,
``dependency``, ``worker``, ``peer``): ``consumed`` (handed out by ``poll()``), ``processed``
(the handler's work done), ``call_failed``, ``assigned``/``revoked``/``lost``, ``commit_failed``,
``sleep`` and ``pause`` intervals, and a ``settled`` row when both members hold partitions
(rebalances before it are the group forming). :func:`summarize` turns a result into the
numbers the notebook compares.

Modules: :mod:`~offsetlab.lab.experiments.e07_core` (parameters, dependency, result, the
common story), :mod:`~offsetlab.lab.experiments.e07_watch` (the broker's view, settling),
:mod:`~offsetlab.lab.experiments.e07_raw` and :mod:`~offsetlab.lab.experiments.e07_adapter`
(the strategies), :mod:`~offsetlab.lab.experiments.e07_summary` (numbers and picture). This
module re-exports what the notebook uses and runs strategies side by side.
"""

from __future__ import annotations

from collections.abc import Sequence

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.experiments.e07_adapter import WorkItem, run_bus_depends_on, run_runner_breaker
from offsetlab.lab.experiments.e07_core import (
    OutageDependency,
    PauseParams,
    ScenarioResult,
    Strategy,
    retrying,
)
from offsetlab.lab.experiments.e07_raw import run_raw_pause, run_raw_sleep
from offsetlab.lab.experiments.e07_summary import LANES, MEMBERSHIP, plot_comparison, summarize
from offsetlab.lab.experiments.e07_watch import GroupNeverSettled, GroupWatcher, listed

__all__ = [
    "PauseParams",
    "OutageDependency",
    "ScenarioResult",
    "Strategy",
    "GroupWatcher",
    "GroupNeverSettled",
    "listed",
    "retrying",
    "run_raw_sleep",
    "run_raw_pause",
    "run_runner_breaker",
    "run_bus_depends_on",
    "run_side_by_side",
    "run_repeated",
    "WorkItem",
    "summarize",
    "plot_comparison",
    "MEMBERSHIP",
    "LANES",
]


#: at most this many scenarios at once (the fast profile's 4 strategies x 3 repeats)
MAX_AT_ONCE = 12


def run_repeated(broker: BrokerHandle, params: PauseParams, strategies: Sequence[Strategy],
                 repeats: int) -> dict[str, list[ScenarioResult]]:
    """Every strategy ``repeats`` times, side by side (own topics, groups and timelines), at
    most :data:`MAX_AT_ONCE` at a time; results by strategy name, in the order given."""
    jobs = [s for _ in range(repeats) for s in strategies]
    runs = []
    for i in range(0, len(jobs), MAX_AT_ONCE):
        runs += run_side_by_side(broker, params, *jobs[i:i + MAX_AT_ONCE])
    out: dict[str, list[ScenarioResult]] = {}
    for r in runs:
        out.setdefault(r.strategy, []).append(r)
    return out


def run_side_by_side(broker: BrokerHandle, params: PauseParams,
                     *strategies: Strategy
                     ) -> list[ScenarioResult]:
    """Run strategies at the same time (own topics, groups and timelines), each on its own
    thread; return their results in the order given, or raise the first failure."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(strategies), thread_name_prefix="e07") as pool:
        futures = [pool.submit(fn, broker, params) for fn in strategies]
        return [f.result() for f in futures]
