"""E10's answer (a partition's leader dies on the three-node cluster): what do producers with
``acks=all`` and ``acks=1`` and a consumer group with a retry in flight see? Chosen from the
findings of :mod:`offsetlab.lab.experiments.e10_findings`; :mod:`offsetlab.lab.answers` asks it:
``QUESTIONS["10_cluster_failover"]``.

A finding a clause needs that was not recorded (a broker kind that cannot run the cluster)
makes that clause say ``not measured``, as every other experiment's answer does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from offsetlab.lab.experiments.e10_findings import (
    COORDINATOR,
    LOST,
    PRODUCER_IDS,
    REBALANCES,
    RETRY_AFTER,
    TWICE,
)

if TYPE_CHECKING:
    from offsetlab.lab.answers import Findings

__all__ = ["RESTS_ON", "answer"]

ALL, ONE = "acks=all", "acks=1"
#: the findings the answer rests on
RESTS_ON = (LOST.format(ALL), TWICE.format(ALL), LOST.format(ONE), TWICE.format(ONE),
            PRODUCER_IDS.format(ALL), PRODUCER_IDS.format(ONE), COORDINATOR, REBALANCES, RETRY_AFTER)


def _producer(setting: str) -> Callable[[Findings], str]:
    def decide(f: Findings) -> str:
        lost = f.true(LOST.format(setting))
        twice = f.true(TWICE.format(setting))
        text = (f"{setting} lost acknowledged records (the leader alone had them)" if lost
                else f"{setting} lost no acknowledged record")
        return text + (", and wrote some twice" if twice else ", and wrote none twice")
    return decide


def _ids(f: Findings) -> str:
    every, one = str(f[PRODUCER_IDS.format(ALL)]), str(f[PRODUCER_IDS.format(ONE)])
    if every == "all" and one == "none":
        return ("kafka-python's acks=1 producer is not idempotent: its record batches carry no "
                "producer id (nothing lets the broker drop a retried batch it already has), the "
                "acks=all producer's all do")
    return f"record batches with a producer id: acks=all {every}, acks=1 {one}"


def _group(f: Findings) -> str:
    moved = f.true(COORDINATOR)
    n = int(f[REBALANCES])
    head = ("the consumer group's coordinator moved to a surviving node" if moved
            else "the consumer group's coordinator did not move off the killed node")
    return head + (", with no rebalance" if n == 0 else f", with {n} rebalance(s)")


def _retry(f: Findings) -> str:
    value = f[RETRY_AFTER]
    if str(value) == "not measured":
        return "the retry copy was not due while the partition had no leader, so its wait was not measured"
    if f.true(RETRY_AFTER):
        return ("the retry copy that was waiting for its due time was delivered only after the "
                "new leader took over, once")
    return "the retry copy was delivered at its due time, before the new leader took over"


#: (topic, clause): a clause whose finding is missing says so under its topic
_CLAUSES: tuple[tuple[str, Callable[[Findings], str]], ...] = (
    ("acks=all", _producer(ALL)), ("acks=1", _producer(ONE)), ("idempotence", _ids),
    ("the group", _group), ("the retry", _retry))


def answer(f: Findings) -> str:
    from offsetlab.lab.answers import Missing, not_measured

    texts, missing = [], []
    for topic, decide in _CLAUSES:
        try:
            texts.append(decide(f))
        except Missing as m:
            missing.append(m)
            texts.append(f"{topic}: {not_measured(m.name)}")
    if len(missing) == len(_CLAUSES):  # nothing measured (no cluster): the answer says so once
        raise missing[0]
    return "; ".join(texts)
