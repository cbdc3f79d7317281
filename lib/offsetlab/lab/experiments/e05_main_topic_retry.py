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
the notebooks use and computes the notebook's findings (:func:`findings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
           "run_bus_variants", "findings"]


def findings(raw: Mapping[str, Fail03Run], bus: Mapping[str, BusFail03Run], summary: Any, *,
             max_retries: int) -> dict[str, Any]:
    """E05's deterministic findings, from the runs of the notebook (names as it uses them).

    ``raw``: :func:`run_variants` with ``transient``, ``poison``, ``no re-produce``,
    ``crash, offset+1``, ``crash, offset``; ``bus``: :func:`run_bus_variants` with
    ``bus transient`` and ``bus poison``; ``summary``: :func:`outage.summarize` of a run with
    pipelines ``seed-reproduce``, ``seed-sleep``, ``bus-main-topic``, ``bus-retry-topic``.
    Timing-dependent numbers become threshold comparisons.
    """
    out: dict[str, Any] = {}
    t, p = raw["transient"], raw["poison"]
    out["raw transient: deliveries per message"] = attempts(t)
    out["raw transient: processing order"] = processing_order(t)
    out["raw poison: deliveries of message 2 == max_retries + 1"] = attempts(p)[2] == max_retries + 1
    out["raw poison: dead-lettered"] = p.dead_letters
    out["raw no re-produce: lost"] = outcome(raw["no re-produce"])["lost"]
    for name in ("crash, offset+1", "crash, offset"):
        r = raw[name]
        crashed = [d.offset for d in r.deliveries if d.outcome == "crash"]
        first = r.first_after_restart[:1]
        out[f"raw {name}: restart began at [the crashed record, the one before]"] = [
            bool(first and crashed and first[0] == crashed[0]),
            bool(first and crashed and first[0] == crashed[0] - 1)]
        o = outcome(r)
        out[f"raw {name}: [lost, duplicated]"] = [o["lost"], o["duplicated"]]
        out[f"raw {name}: committed == end of topic"] = o["committed == end of topic"]
    for name, b in bus.items():
        o = b.outcome()
        out[f"{name}: deliveries per message"] = b.attempts()
        out[f"{name}: [lost, duplicated, dead-lettered]"] = [o["lost"], o["duplicated"],
                                                           o["dead-lettered"]]
        out[f"{name}: committed == end of topic"] = o["committed == end of topic"]
    out["bus poison: dead letter [attempt header, original offset]"] = [
        [prov.attempt, prov.original_offset] for _, prov in bus["bus poison"].dead_letters]
    s = summary
    out["outage: every pipeline processed or dead-lettered every item"] = bool(s["finished"].all())
    out["outage: lost per pipeline"] = {k: int(v) for k, v in s["lost"].items()}
    out["outage: duplicated per pipeline"] = {k: int(v) for k, v in s["duplicated"].items()}
    out["outage: seed-reproduce dead-lettered items that only met the outage >= 1"] = bool(
        s["dead_lettered"]["seed-reproduce"] >= 1)
    out["outage: seed-reproduce max deliveries == max_retries + 1"] = bool(
        s["max_attempts"]["seed-reproduce"] == max_retries + 1)
    out["outage: bus-main-topic dead-lettered"] = int(s["dead_lettered"]["bus-main-topic"])
    out["outage: bus subscriptions' rebalances while producing"] = {
        k: int(v) for k, v in s["rebalances"].items() if k.startswith("bus-")}
    ratio = s["healthy_in_outage"]["bus-retry-topic"] / s["healthy_in_outage"]["bus-main-topic"]
    out["outage: healthy throughput during it, retry topic / main topic >= 1.25"] = bool(ratio >= 1.25)
    out["outage: longest healthy-key stall, main topic >= 2 x retry topic"] = bool(
        s["healthy_stall_max_s"]["bus-main-topic"] >= 2 * s["healthy_stall_max_s"]["bus-retry-topic"])
    out["outage: seed-sleep longest healthy-key stall >= 1 s"] = bool(
        s["healthy_stall_max_s"]["seed-sleep"] >= 1.0)
    out["outage: retry topic processed some key out of order"] = bool(
        s["keys_out_of_order"]["bus-retry-topic"] >= 1)
    return out
