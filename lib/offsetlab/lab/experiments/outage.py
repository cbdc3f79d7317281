"""The outage E05 and E06 share: a dependency down for a while, healthy keys still arriving.

One producer sends the same schedule of work items to the main topic of every *pipeline*
(one retry strategy each) at ``rate_per_s``; every ``dependent_every``-th key needs a
dependency, the others (the *healthy keys*) need nothing. The dependency is down from
``outage_start_s`` for ``outage_s`` seconds after the first send. All pipelines run at the
same time, against the same broker and the same outage, so they share one time axis.

Pipelines (each on its own topics and consumer group):

- :class:`RawMainTopicPipeline` -- the seed's fail03 in raw kafka-python: on a failure,
  re-produce the record to its own topic with a ``retry-count`` header and commit
  offset + 1; after ``max_retries`` retries, the dead-letter topic. With ``sleep`` (a
  :class:`~offsetlab.bus.retry.Backoff`) the handler sleeps before re-producing (a delay
  modelled on KafkaJS's retry backoff, spent inside the handler: the partition waits with
  it; KafkaJS itself waits in its runner: E05's client section).
- :class:`RawRetryTopicPipeline` -- E06 in raw kafka-python: a failure goes to
  ``<topic>-retry`` with provenance headers (:mod:`offsetlab.bus.headers`: original topic,
  partition, offset, attempt, error, not-before); a separate *retrier* consumer leaves the
  records there (partition paused, still polling) until they are due *and* the dependency
  answers its health probe (a real request with a timeout), then processes them; the
  dead-letter topic after the last attempt.
- :class:`BusPipeline` -- the adapter: ``KafkaBus`` with a retry strategy
  (``MainTopicRetry`` for E05, ``RetryTopicRetry`` for E06); see ``offsetlab.bus.kafka_bus``.

The handler is the same for all (:meth:`OutageRun.handler_for`): it records a ``processed``
row (or ``failed`` when the dependency refused) on the run's :class:`Timeline` with the item's
``seq`` and the delivery ``attempt``. :func:`run_outage` drives it and reads the dead-letter
topics back from the broker; :func:`summarize` and :func:`throughput` turn the run into what
the notebooks compare: healthy-key throughput during the outage, latency of retried items,
per-key order, attempts, lost and duplicated items.

Modules: :mod:`~offsetlab.lab.experiments.outage_scenario` (dependency, work items, config,
the pipeline protocol), :mod:`~offsetlab.lab.experiments.outage_raw` (the raw pipelines),
:mod:`~offsetlab.lab.experiments.outage_bus` (the adapter's pipeline),
:mod:`~offsetlab.lab.experiments.outage_run` (the run),
:mod:`~offsetlab.lab.experiments.outage_repeats` (the run ``repeats`` times, and the spread),
:mod:`~offsetlab.lab.experiments.outage_summary` (numbers and picture) and
:mod:`~offsetlab.lab.experiments.outage_findings` (the shared findings); the dependency is
a TCP service (:mod:`~offsetlab.lab.experiments.outage_dependency`). This module
re-exports what the notebooks use.
"""

from __future__ import annotations

from offsetlab.lab.experiments.outage_bus import (
    BUS_CONSUMER_SETTINGS,
    BusPipeline,
    warmed_factory,
)
from offsetlab.lab.experiments.outage_raw import (
    RETRY_COUNT_HEADER,
    RawMainTopicPipeline,
    RawRetryTopicPipeline,
)
from offsetlab.lab.experiments.outage_repeats import (
    TIMED,
    all_summaries,
    plot_spread,
    run_repeats,
    spread_table,
    spreads,
)
from offsetlab.lab.experiments.outage_run import OutageRun, read_deliveries, run_outage
from offsetlab.lab.experiments.outage_scenario import (
    Dependency,
    DependencyDown,
    OutageConfig,
    OutageWork,
    Pipeline,
    WorkItem,
)
from offsetlab.lab.experiments.outage_summary import plot_outage, summarize, throughput
from offsetlab.lab.raw import read_topic

__all__ = [
    "DependencyDown",
    "Dependency",
    "WorkItem",
    "OutageWork",
    "OutageConfig",
    "OutageRun",
    "Pipeline",
    "RawMainTopicPipeline",
    "RawRetryTopicPipeline",
    "BusPipeline",
    "warmed_factory",
    "run_outage",
    "run_repeats",
    "all_summaries",
    "spread_table",
    "spreads",
    "plot_spread",
    "TIMED",
    "read_deliveries",
    "read_topic",
    "summarize",
    "throughput",
    "plot_outage",
    "RETRY_COUNT_HEADER",
    "BUS_CONSUMER_SETTINGS",
]
