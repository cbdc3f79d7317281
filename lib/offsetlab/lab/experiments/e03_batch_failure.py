"""E03: one failure inside a batch (the seed's ``fail01``).

The seed produced 5 keyed messages, failed message 3 in an ``eachBatch`` handler and asked:
can the other messages be completed and only message 3 left for later? No: what a consumer
group stores per partition is one committed offset, *the position to resume from*, not a set
of done messages. Committing for message 4 or 5 says "resume after 5", so message 3 is
skipped for good. What you can do is stop the batch at the failure and seek back: 3, 4 and 5
are delivered again. Spreading keys over partitions confines that stall to the failed
message's partition.

Scenarios (each on its own topic and group, every message numbered 1..n in produce order;
message ``fail_message`` fails on its first ``fail_times`` attempts, ``None`` = always):

- :func:`run_raw_commit_past` -- raw kafka-python, the seed's attempt: process every message
  of the batch, commit ``offset + 1`` after each success, log the failure and carry on. Then
  a restart (a new consumer in the same group) reads from the committed position.
- :func:`run_raw_seek_back` -- raw kafka-python: on the failure, seek the partition back to
  the failed offset and stop processing that partition's batch; the next poll redelivers.
- :func:`run_runner` -- the adapter's :class:`~offsetlab.bus.runner.ConsumerRunner` with a
  batch handler. ``stop_at_failure=False`` is the seed's handler (settle everything that
  worked, carry on past the failure): the runner still commits only up to the last
  *contiguous* settled offset and seeks back to the gap itself. ``stop_at_failure=True``
  seeks back at the failure and skips the rest of that partition (``ctx.skipped``).
  With ``partitions=3`` and keys spread over them, only the failed message's partition stalls.

Every scenario returns a :class:`ScenarioResult`: the produced messages, one
:class:`Attempt` per batch (delivered, processed, failed, committed position after it), the
committed offsets read back from the broker at the end, and a
:class:`~offsetlab.lab.timeline.Timeline`. The shared pieces (:class:`Flaky`,
:func:`new_scenario`, :func:`run_raw_consumer`, :func:`restart_and_finish`,
:func:`runner_config`, the tables and pictures) are reused by E04.

Modules: :mod:`~offsetlab.lab.experiments.e03_scenario` (messages, the failing work, attempts,
the result), :mod:`~offsetlab.lab.experiments.e03_raw` (the raw consumer and its batch
handlers), :mod:`~offsetlab.lab.experiments.e03_runner` (the adapter's runner) and
:mod:`~offsetlab.lab.experiments.e03_plots` (tables and pictures). This module re-exports
what the notebooks and E04 use.
"""

from __future__ import annotations

from offsetlab.lab.experiments.e03_plots import (
    attempts_frame,
    deliveries_frame,
    plot_attempts,
    plot_timelines,
)
from offsetlab.lab.experiments.e03_raw import (
    BatchLog,
    RawBatchHandler,
    at_end,
    commit_past_failure,
    consume_until,
    raw_consumer,
    restart_and_finish,
    run_raw_commit_past,
    run_raw_consumer,
    run_raw_seek_back,
    seek_back_at_failure,
)
from offsetlab.lab.experiments.e03_runner import run_runner, runner_config
from offsetlab.lab.experiments.e03_scenario import (
    GROUP_SETTINGS,
    KEY_PREFIX,
    Attempt,
    Flaky,
    Message,
    ProcessingFailed,
    ScenarioResult,
    new_scenario,
    produce_numbered,
)
from offsetlab.lab.raw import warmed_consumer

__all__ = [
    # the scenario
    "KEY_PREFIX", "GROUP_SETTINGS", "ProcessingFailed", "Message", "Flaky", "Attempt",
    "ScenarioResult", "produce_numbered", "new_scenario",
    # raw kafka-python
    "raw_consumer", "at_end", "consume_until", "RawBatchHandler", "BatchLog",
    "commit_past_failure", "seek_back_at_failure", "run_raw_consumer", "restart_and_finish",
    "run_raw_commit_past", "run_raw_seek_back",
    # the adapter's runner
    "runner_config", "run_runner",
    # tables and pictures
    "attempts_frame", "deliveries_frame", "plot_timelines", "plot_attempts",
    # E04 imports it from here
    "warmed_consumer",
]
