"""E06's own findings as finders: the raw retry topic's copies read back from the broker.

Each takes the :class:`~offsetlab.lab.experiments.e06_retry_topic.CopyRow` rows (records of the
retry and dead-letter topics, headers decoded) and the main topic's offsets; the deliveries,
outcomes and committed positions use :mod:`~offsetlab.lab.experiments.e05_findings`, the
outage :mod:`~offsetlab.lab.experiments.outage_findings`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from offsetlab.lab.findings import Finding, finder

__all__ = ["copies_attempts", "copies_name_origin", "not_before_after_copy", "dead_letters",
           "dead_letter_after_max"]


def _retry(copies: Sequence[Any]) -> list[Any]:
    return [c for c in copies if c.topic == "retry"]


@finder("raw: retry-topic copies' attempt headers")
def copies_attempts(copies: Sequence[Any]) -> Finding:
    return Finding("raw: retry-topic copies' attempt headers", [c.attempt for c in _retry(copies)],
                   rule="offsetlab-attempt of every retry-topic record, in offset order")


@finder("raw: every copy names its first delivery (original topic, partition, offset)")
def copies_name_origin(copies: Sequence[Any], main_offsets: Mapping[int, int]) -> Finding:
    ok = all(c.original_topic_is_main and c.original_partition == 0
             and c.original_offset == main_offsets.get(c.seq) for c in copies)
    return Finding("raw: every copy names its first delivery (original topic, partition, offset)",
                   bool(ok and copies), rule="kafka_dlt-original-* headers == the main topic "
                   "record's, every copy (and there are copies)")


@finder("raw: every retry copy's not-before is after its own timestamp")
def not_before_after_copy(copies: Sequence[Any]) -> Finding:
    retry = _retry(copies)
    return Finding("raw: every retry copy's not-before is after its own timestamp",
                   bool(retry) and all(c.not_before_after_ms is not None
                                       and c.not_before_after_ms > 0 for c in retry),
                   rule="offsetlab-not-before > the copy's record timestamp",
                   measured=[c.not_before_after_ms for c in retry])


@finder("raw: dead letters [seq, attempt, exception, reason]")
def dead_letters(copies: Sequence[Any]) -> Finding:
    return Finding("raw: dead letters [seq, attempt, exception, reason]",
                   [[c.seq, c.attempt, c.exception, c.reason] for c in copies if c.topic == "dlt"])


@finder("raw: dead letter after max_retries + 1 deliveries")
def dead_letter_after_max(copies: Sequence[Any], max_retries: int) -> Finding:
    attempts = [c.attempt for c in copies if c.topic == "dlt"]
    return Finding("raw: dead letter after max_retries + 1 deliveries", attempts == [max_retries + 1],
                   rule=f"the dead letter's attempt header == {max_retries + 1}", measured=attempts)
