"""A thread-safe recorder of what every client did, on one clock: the experiments' raw data.

A :class:`Timeline` holds rows ``(seq, t, who, what, phase, topic, partition, offset, key,
detail)``:

- ``t`` is seconds since the timeline was created, on ``time.monotonic()`` (the clock the
  runner's lifecycle events and :mod:`offsetlab.lab.raw` use too, so times from any of them
  can be placed on it with ``at=``);
- ``who`` is the lane (a client: ``producer``, ``consumer-1``, ``runner-a``);
- ``what`` is what happened (``produced``, ``consumed``, ``assigned``, ``join``, ``pause``,
  ``crash``, ...); ``phase`` is ``"start"``/``"end"`` for the two rows of an interval
  (:meth:`Timeline.span`, :meth:`Timeline.interval`) and ``""`` for an instant;
- ``detail`` is a JSON-friendly dict (or a string) for everything else.

Attach it to the clients of an experiment:

- producers: :func:`recorded_send` / :class:`RecordingProducer` record ``produced`` when the
  broker acknowledges (partition and offset from the ``RecordMetadata``) and
  ``produce_failed`` when it does not;
- raw consumers: :func:`record_consumed` for each ``ConsumerRecord``, and
  :class:`TimelineRebalanceListener` for ``revoked`` / ``assigned`` / ``lost``;
- the adapter's consumer runner: :func:`runner_listener` maps its lifecycle events to rows
  (a group join becomes a ``join`` interval, pause/resume a ``pause`` interval).

:meth:`Timeline.to_frame` gives a pandas DataFrame sorted by time, :meth:`Timeline.save` writes
``<name>.csv`` (for people and pandas) and ``<name>.json`` (lossless, read back by
:meth:`Timeline.load`), :func:`deliveries` counts per message how often it was produced and
consumed (and by whom), and :func:`offsetlab.lab.plots.plot_timeline` draws it.

Recording is cheap and never raises into the client that triggered it: callbacks run on
kafka-python's IO thread, where an exception would be logged and lost (producer) or propagate
into ``poll()`` (rebalance listener).

Modules: :mod:`~offsetlab.lab.timeline_core` (the recorder, its files and frames) and
:mod:`~offsetlab.lab.timeline_clients` (producers, consumers and the runner recording on
it). This module re-exports both.
"""

from __future__ import annotations

from offsetlab.lab.timeline_clients import (
    RecordingProducer,
    TimelineRebalanceListener,
    record_consumed,
    recorded_send,
    runner_listener,
)
from offsetlab.lab.timeline_core import COLUMNS, Row, Timeline, deliveries, jsonable

__all__ = [
    "COLUMNS",
    "Row",
    "Timeline",
    "recorded_send",
    "RecordingProducer",
    "record_consumed",
    "TimelineRebalanceListener",
    "runner_listener",
    "deliveries",
    "jsonable",
]
