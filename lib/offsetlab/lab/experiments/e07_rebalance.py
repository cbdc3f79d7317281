"""E07: a rebalance while the worker is paused. Does the pause survive it?

kafka-python keeps a partition's paused flag in its subscription state; a rebalance revokes
and assigns partitions, and whether the flag survives that is what is measured here, not
assumed (the offsetlab bus re-pauses in its assignment callback either way). The same story as the
pausing strategies (:func:`~offsetlab.lab.experiments.e07_raw.run_raw_pause`,
:func:`~offsetlab.lab.experiments.e07_adapter.run_bus_depends_on`), and while the worker is
paused a third member joins the group and leaves again (:func:`third_member_visits`). The
third member subscribes to a topic of its own, so the assignor hands the worker its partition
back (the finding checks that it did): what is measured is only whether the worker fetches
from it before the dependency is back.
"""

from __future__ import annotations

import dataclasses
import time

from kafka import KafkaConsumer

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.lab.experiments.e07_core import PauseParams, ScenarioResult, Strategy
from offsetlab.lab.raw import create_topic, unique
from offsetlab.lab.timeline import TimelineRebalanceListener

__all__ = ["JOINER", "third_member_visits", "rebalanced"]

#: the third member's client id and lane
JOINER = "joiner"


def third_member_visits(broker: BrokerHandle, result: ScenarioResult) -> None:
    """``rebalance_after_s`` after the messages were produced, a third member joins the
    group (on a topic of its own), polls until it holds its partition, stays
    ``joiner_stays_s`` and leaves (``close()``: LeaveGroup). Marks ``rebalance_start`` and
    ``joiner_left`` on the result."""
    p, tl = result.params, result.timeline
    side = create_topic(broker, unique(f"e07-{result.strategy}-side"), 1)
    time.sleep(p.rebalance_after_s or 0.0)
    result.marks["rebalance_start"] = tl.now()
    tl.record(JOINER, "started")
    consumer = KafkaConsumer(client_id=JOINER, group_id=result.group,
                             **broker.clients(**p.group_settings()))
    try:
        consumer.partitions_for_topic(side)
        consumer.subscribe([side], listener=TimelineRebalanceListener(tl, JOINER))
        joined = Deadline(p.settle_timeout_s)
        while not consumer.assignment() and not joined.expired():
            consumer.poll(timeout_ms=100)
        stay = Deadline(p.joiner_stays_s)
        while not stay.expired():
            consumer.poll(timeout_ms=100)
    finally:
        consumer.close()
        result.marks["joiner_left"] = tl.now()
        tl.record(JOINER, "left")


def rebalanced(strategy: Strategy, *, after_s: float, stays_s: float) -> Strategy:
    """``strategy`` with a third member visiting while the worker is paused; its results are
    named ``"<strategy> + rebalance"``."""

    def run(broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
        result = strategy(broker, dataclasses.replace(params, rebalance_after_s=after_s,
                                                      joiner_stays_s=stays_s))
        result.strategy = f"{result.strategy} + rebalance"
        return result

    run.__name__ = f"{getattr(strategy, '__name__', 'strategy')}_rebalanced"
    return run
