"""The findings of the outage E05 and E06 share, as finders (:mod:`offsetlab.lab.findings`).

Every finder judges recorded data only: the per-repeat summaries of
:func:`~offsetlab.lab.experiments.outage_summary.summarize` (one ``DataFrame`` per repeat,
indexed by pipeline), the :func:`~offsetlab.lab.experiments.outage_repeats.spreads` of their
timed columns, the deliveries read back from the topics
(:attr:`~offsetlab.lab.experiments.outage_run.OutageRun.deliveries_read`) and the handler's
recorded calls. Timing comparisons are made on the medians of the repeats, with thresholds
chosen where the mechanisms compared are a factor of 2 or more apart (see each rule).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from offsetlab.lab.findings import Finding, finder

__all__ = ["every_item_accounted", "lost_per_pipeline", "duplicated_per_pipeline",
           "healthy_throughput_ratio", "stall_ratio",
           "retry_topic_out_of_order", "retry_topics_out_of_order", "dead_lettered_outage_items",
           "dead_letter_deliveries", "failed_retries_raw", "failed_retries_bus",
           "raw_max_deliveries", "slowest_retried_raw_vs_bus", "probe_throughput"]


def _median(measure: Mapping[str, Any]) -> float:
    m = measure.get("median")
    return float("nan") if m is None else float(m)


@finder("outage: every pipeline processed or dead-lettered every item")
def every_item_accounted(summaries: Sequence[Any]) -> Finding:
    finished = [bool(s["finished"].all()) for s in summaries]
    return Finding("outage: every pipeline processed or dead-lettered every item", all(finished),
                   rule="every pipeline finished in every repeat", measured=finished)


@finder("outage: lost per pipeline")
def lost_per_pipeline(summaries: Sequence[Any]) -> Finding:
    total = {k: sum(int(s.loc[k, "lost"]) for s in summaries) for k in summaries[0].index}
    return Finding("outage: lost per pipeline", total,
                   rule="produced, never processed, not dead-lettered; summed over the repeats",
                   measured=[{k: int(v) for k, v in s["lost"].items()} for s in summaries])


@finder("outage: duplicated per pipeline")
def duplicated_per_pipeline(summaries: Sequence[Any]) -> Finding:
    total = {k: sum(int(s.loc[k, "duplicated"]) for s in summaries) for k in summaries[0].index}
    return Finding("outage: duplicated per pipeline", total,
                   rule="processed more than once; summed over the repeats",
                   measured=[{k: int(v) for k, v in s["duplicated"].items()} for s in summaries])


@finder("outage: healthy throughput during it, retry topic / main topic >= 1.25")
def healthy_throughput_ratio(on_time: Mapping[str, Mapping[str, Any]], *,
                             retry: str = "bus-retry-topic", main: str = "bus-main-topic") -> Finding:
    """``on_time``: spreads of ``healthy_in_outage``. A pipeline that keeps up scores ~1.0;
    one whose partition waits for copies during the outage scores about half or less: no
    mechanism gives a ratio near 1.0, blocking gives ~2 or more."""
    r, m = _median(on_time[retry]), _median(on_time[main])
    ratio = float("inf") if m == 0 else r / m
    return Finding("outage: healthy throughput during it, retry topic / main topic >= 1.25",
                   bool(ratio >= 1.25),
                   rule=f"median healthy_in_outage: {retry} / {main} >= 1.25",
                   measured={"ratio of medians": ratio, retry: dict(on_time[retry]),
                             main: dict(on_time[main])})


@finder("outage: longest healthy-key stall, main topic >= 2 x retry topic")
def stall_ratio(stalls: Mapping[str, Mapping[str, Any]], *, retry: str = "bus-retry-topic",
                main: str = "bus-main-topic") -> Finding:
    """``stalls``: spreads of ``healthy_stall_max_s``. A partition that keeps moving stalls
    only between healthy items (a few tenths of a second here); one paused until a copy is
    due stalls for the backoff step (>= 1 s)."""
    return Finding("outage: longest healthy-key stall, main topic >= 2 x retry topic",
                   bool(_median(stalls[main]) >= 2 * _median(stalls[retry])),
                   rule=f"median healthy_stall_max_s: {main} >= 2 x {retry}",
                   measured={main: dict(stalls[main]), retry: dict(stalls[retry])})


def _out_of_order_share(summaries: Sequence[Any], name: str) -> tuple[bool, list[int]]:
    counts = [int(s.loc[name, "keys_out_of_order"]) for s in summaries]
    return statistics.median(counts) >= 1, counts


@finder("outage: retry topic processed some key out of order")
def retry_topic_out_of_order(summaries: Sequence[Any], name: str = "bus-retry-topic") -> Finding:
    value, counts = _out_of_order_share(summaries, name)
    return Finding("outage: retry topic processed some key out of order", bool(value),
                   rule=f"median over the repeats of {name}'s keys out of order >= 1",
                   measured=counts)


@finder("outage: retry topics processed some key out of order [raw, bus]")
def retry_topics_out_of_order(summaries: Sequence[Any], raw: str = "raw-retrier",
                              bus: str = "bus-retry-topic") -> Finding:
    (a, ca), (b, cb) = _out_of_order_share(summaries, raw), _out_of_order_share(summaries, bus)
    return Finding("outage: retry topics processed some key out of order [raw, bus]",
                   [bool(a), bool(b)],
                   rule="median over the repeats of keys out of order >= 1",
                   measured={raw: ca, bus: cb})


@finder("outage: seed-reproduce dead-lettered items that only met the outage >= 1")
def dead_lettered_outage_items(summaries: Sequence[Any], name: str = "seed-reproduce") -> Finding:
    dead = [int(s.loc[name, "dead_lettered"]) for s in summaries]
    return Finding("outage: seed-reproduce dead-lettered items that only met the outage >= 1",
                   all(d >= 1 for d in dead),
                   rule="dead letters read back from the broker >= 1 in every repeat (the "
                        "dependency fails only during the outage)", measured=dead)


@finder("outage: {} deliveries of each dead-lettered item [read from the topics, handler calls]")
def dead_letter_deliveries(name: str, read: Sequence[Mapping[int, Sequence[int]]],
                           calls: Sequence[Mapping[int, int]],
                           dead: Sequence[Sequence[int]]) -> Finding:
    """Per repeat: ``read`` (seq -> attempt numbers of its records on the handled topics),
    ``calls`` (seq -> handler calls recorded) and the dead-lettered seqs. The value: the
    distinct delivery counts of the dead-lettered items, from each source."""
    from_topics = sorted({len(r.get(seq, ())) for r, d in zip(read, dead, strict=True) for seq in d})
    from_calls = sorted({int(c.get(seq, 0)) for c, d in zip(calls, dead, strict=True) for seq in d})
    return Finding(f"outage: {name} deliveries of each dead-lettered item "
                   "[read from the topics, handler calls]", [from_topics, from_calls],
                   rule="distinct counts over every dead-lettered item of every repeat")


@finder("outage: raw retriers' retries that failed during the outage [process, move-back]")
def failed_retries_raw(failed: Mapping[str, Sequence[int]], names: Sequence[str] = (
        "raw-retrier", "raw-move-back")) -> Finding:
    """``failed``: per pipeline, per repeat, handler calls on attempt >= 2 that failed while
    the dependency was down. The raw retriers process a due copy only after their health
    probe (a real request) answered."""
    return Finding("outage: raw retriers' retries that failed during the outage [process, move-back]",
                   [int(sum(failed[n])) for n in names], rule="summed over the repeats",
                   measured={n: list(failed[n]) for n in names})


@finder("outage: {} retries that failed during the outage >= 1")
def failed_retries_bus(failed: Mapping[str, Sequence[int]], name: str = "bus-retry-topic") -> Finding:
    """Whether ``name`` (a bus pipeline) spent retries (calls on attempt >= 2) on the outage,
    in the median repeat."""
    return Finding(f"outage: {name} retries that failed during the outage >= 1",
                   bool(statistics.median(failed[name]) >= 1),
                   rule=f"median over the repeats of {name}'s failed retries during the outage >= 1",
                   measured=list(failed[name]))


@finder("outage: the same probe, healthy throughput during it, raw retrier / bus with breaker >= 2")
def probe_throughput(on_time: Mapping[str, Mapping[str, Any]], *, raw: str = "raw-retrier",
                     bus: str = "bus-retry-topic-breaker") -> Finding:
    """``on_time``: spreads of ``healthy_in_outage``. Both wait for the dependency with the same
    probe; the raw retrier pauses only its retry topic (healthy keys on time: ~1.0), the bus's
    open breaker pauses every partition of the subscription, the main topic's too (healthy
    items produced during the outage wait for its end: ~0)."""
    r, b = _median(on_time[raw]), _median(on_time[bus])
    ratio = float("inf") if b == 0 else r / b
    return Finding("outage: the same probe, healthy throughput during it, raw retrier / bus with "
                   "breaker >= 2", bool(ratio >= 2),
                   rule=f"median healthy_in_outage: {raw} / {bus} >= 2",
                   measured={"ratio of medians": ratio, raw: dict(on_time[raw]), bus: dict(on_time[bus])})


@finder("outage: raw retriers' max deliveries, read from the topics [process, move-back]")
def raw_max_deliveries(read: Mapping[str, Sequence[Mapping[int, Sequence[int]]]],
                       names: Sequence[str] = ("raw-retrier", "raw-move-back")) -> Finding:
    """``read``: per pipeline, per repeat, seq -> attempt numbers of its records on the
    topics its handler reads. The value: the most records any item had, over the repeats."""
    return Finding("outage: raw retriers' max deliveries, read from the topics [process, move-back]",
                   [max((len(a) for r in read[n] for a in r.values()), default=0) for n in names],
                   rule="max over items and repeats of the item's records on the handled topics")


@finder("outage: slowest retried item, median over repeats, raw retrier < bus-retry-topic")
def slowest_retried_raw_vs_bus(slowest: Mapping[str, Mapping[str, Any]], *,
                               raw: str = "raw-retrier", bus: str = "bus-retry-topic") -> Finding:
    """``slowest``: spreads of ``retried_latency_max_s``. The raw retrier goes on as soon as
    its probe answers after the outage; the bus retries by the backoff clock alone and waits
    for the next step after the recovery (with a 1 s backoff and a 4 s outage, the first
    item to fail waits until 1 + 2 + 4 = 7 s, against ~4 s)."""
    return Finding("outage: slowest retried item, median over repeats, raw retrier < bus-retry-topic",
                   bool(_median(slowest[raw]) < _median(slowest[bus])),
                   rule=f"median retried_latency_max_s: {raw} < {bus}",
                   measured={raw: dict(slowest[raw]), bus: dict(slowest[bus])})
