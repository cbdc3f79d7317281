"""E05: the main topic as its own retry queue (the seed's fail03), in raw kafka-python.

The seed's consumer, on a retryable failure, produced the message again to the same topic
and committed; after 5 retries its KafkaJS consumer crashed, stopped, restarted and "picked up
where it left off" -- except that on restart it read the message *before* the failed one
("I may be committing wrong ... I think I need to commit offset + 1"). With the re-produce
commented out, the consumer read the topic to the end and went quiet: the failed message was
gone.

:func:`run_fail03` replays that with one raw ``KafkaConsumer`` loop whose knobs are the
things the seed tried (re-produce or not, commit ``offset`` or ``offset + 1``, dead-letter or
crash after ``max_retries``); :mod:`~offsetlab.lab.experiments.e05_raw` describes the run,
why each consumer assigns itself the partition, and what is recorded. :func:`attempts`,
:func:`processing_order` and :func:`outcome` turn a :class:`Fail03Run` into findings;
:func:`run_variants` runs several variants at once (own topic and group each).

:func:`run_fail03_bus` asks the same of the adapter: ``KafkaBus`` with a retry strategy
(``MainTopicRetry``: the seed's idea done by the bus -- copy with an ``offsetlab-attempt``
header, acknowledged before the commit of offset + 1, dead-letter topic with provenance after
``max_retries``; E06 passes ``RetryTopicRetry``). Its :class:`BusFail03Run` has the same
``attempts`` / ``processing_order`` / ``outcome`` as the raw run, so the two tabulate side
by side.

Modules: :mod:`~offsetlab.lab.experiments.e05_raw` (the raw run and its reading),
:mod:`~offsetlab.lab.experiments.e05_bus` (the adapter's run). This module re-exports what
the notebooks use; the findings are computed by the finders of
:mod:`~offsetlab.lab.experiments.e05_findings` (and the outage's,
:mod:`~offsetlab.lab.experiments.outage_findings`); the copy-then-commit window is
:mod:`~offsetlab.lab.experiments.e05_window`.
"""

from __future__ import annotations

from offsetlab.lab.experiments.e05_bus import (
    BusFail03Run,
    Fail03Message,
    run_bus_variants,
    run_fail03_bus,
)
from offsetlab.lab.experiments.e05_raw import (
    Delivery,
    Fail03,
    Fail03Run,
    attempts,
    outcome,
    processing_order,
    run_fail03,
    run_variants,
)

__all__ = ["Fail03", "Fail03Run", "Delivery", "run_fail03", "run_variants", "attempts",
           "processing_order", "outcome", "Fail03Message", "BusFail03Run", "run_fail03_bus",
           "run_bus_variants"]

