"""E07 in raw kafka-python: the seed's sleeping handler, and pause + seek + poll on.

Each worker strategy is a ``step(consumer, batch)`` run after every ``poll()`` by a
:class:`~offsetlab.lab.experiments.e07_core.RawMember`; the peer only records and commits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.experiments.e07_core import (
    OutageDependency,
    PauseParams,
    RawMember,
    ScenarioResult,
    commit_recorded,
    key_of,
    new_result,
    plain_step,
    read_back,
    retrying,
    run_story,
)
from offsetlab.lab.timeline import record_consumed

__all__ = ["run_raw_sleep", "run_raw_pause"]


def _run_raw(strategy: str, broker: BrokerHandle, params: PauseParams,
             worker_step: Callable[[ScenarioResult, OutageDependency],
                                   Callable[[KafkaConsumer, dict], None]]) -> ScenarioResult:
    result = new_result(strategy, broker, params)
    dependency = OutageDependency(result.timeline)
    stop = threading.Event()
    members = [RawMember("worker", broker, result, worker_step(result, dependency), stop),
               RawMember("peer", broker, result, plain_step(result.timeline, "peer"), stop)]
    try:
        for m in members:
            m.start()
        run_story(broker, result, dependency, lambda: [m.assigned for m in members])
    finally:
        stop.set()
        for m in members:
            m.join(timeout=params.timeout_s)
    read_back(broker, result)
    return result


def _sleep_step(result: ScenarioResult, dependency: OutageDependency) -> Callable[..., None]:
    """The seed's naive way: wait inside the handler until the dependency answers."""
    tl, who = result.timeline, "worker"

    def step(consumer: KafkaConsumer, batch: dict[TopicPartition, list[Any]]) -> None:
        for records in batch.values():
            for r in records:
                record_consumed(tl, who, r)
                if not dependency.available():
                    with tl.span(who, "sleep", partition=r.partition, offset=r.offset):
                        while not dependency.available():
                            time.sleep(0.05)
                dependency.call(key_of(r))
                record_consumed(tl, who, r, what="processed")
        if batch:
            commit_recorded(consumer, tl, who)

    return step


@retrying
def run_raw_sleep(broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
    """Raw kafka-python; the worker's handler sleeps through the outage without polling."""
    return _run_raw("raw-sleep", broker, params, _sleep_step)


def _pause_step(result: ScenarioResult, dependency: OutageDependency) -> Callable[..., None]:
    """Pause the partition on a failed call, seek back to the record, keep polling; resume
    when the dependency's alive check passes."""
    tl, who = result.timeline, "worker"
    paused: set[TopicPartition] = set()

    def step(consumer: KafkaConsumer, batch: dict[TopicPartition, list[Any]]) -> None:
        if paused and dependency.available():
            live = [tp for tp in paused if tp in consumer.assignment()]
            consumer.resume(*live)
            tl.record(who, "pause", phase="end", detail={"partitions": sorted(tp.partition for tp in paused)})
            paused.clear()
        done: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            for r in records:
                record_consumed(tl, who, r)
                try:
                    dependency.call(key_of(r))
                except ConnectionError:
                    tl.record(who, "call_failed", partition=r.partition, offset=r.offset, key=r.key)
                    consumer.pause(tp)
                    consumer.seek(tp, r.offset)  # redeliver this record after resume
                    if not paused:
                        tl.record(who, "pause", phase="start", detail={"partitions": [tp.partition]})
                    paused.add(tp)
                    break
                record_consumed(tl, who, r, what="processed")
                done[tp] = r.offset + 1
        commit_recorded(consumer, tl, who, done)

    return step


@retrying
def run_raw_pause(broker: BrokerHandle, params: PauseParams) -> ScenarioResult:
    """Raw kafka-python; the worker pauses its partition and keeps polling through the outage."""
    return _run_raw("raw-pause", broker, params, _pause_step)
