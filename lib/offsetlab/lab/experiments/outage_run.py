"""The outage run: every pipeline at once against the same broker, producer and outage.

:func:`run_outage` starts the pipelines, schedules the dependency's outage, produces the
:class:`~offsetlab.lab.experiments.outage_scenario.OutageConfig`'s work items to every
pipeline's main topic at ``rate_per_s``, waits until every item was processed or
dead-lettered (or ``drain_timeout_s``), stops the pipelines and reads their dead-letter topics
back from the broker. :class:`OutageRun` is what it recorded; its :meth:`OutageRun.handler_for`
is the handler every pipeline runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from kafka import KafkaProducer

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.lab.experiments.outage_scenario import (
    DeadLetterFn,
    Dependency,
    DependencyDown,
    OutageConfig,
    Pipeline,
    ProcessFn,
    WorkItem,
)
from offsetlab.lab.raw import read_topic
from offsetlab.lab.timeline import Timeline

log = logging.getLogger(__name__)

__all__ = ["OutageRun", "run_outage"]


@dataclass
class OutageRun:
    """What :func:`run_outage` recorded. Timeline lanes: ``producer``, ``dependency`` (an
    ``outage`` interval) and one per pipeline (``processed`` / ``failed`` with detail
    ``seq`` and ``attempt``; ``dead_lettered`` read back from the broker)."""

    config: OutageConfig
    timeline: Timeline
    pipelines: list[str]
    items: list[WorkItem]
    outage_t: tuple[float, float] = (0.0, 0.0)
    produce_t: dict[int, float] = field(default_factory=dict)
    dead_letters: dict[str, list[int]] = field(default_factory=dict)
    finished: dict[str, bool] = field(default_factory=dict)
    #: from the first send until every item was handled (or the drain timed out)
    producing_t: tuple[float, float] = (0.0, 0.0)

    def handler_for(self, lane: str, dependency: Dependency) -> ProcessFn:
        def process(item: WorkItem, attempt: int) -> None:
            detail = {"seq": item.seq, "attempt": attempt}
            try:
                if item.needs_dependency:
                    dependency.call()
            except DependencyDown:
                self.timeline.record(lane, "failed", key=item.key, detail=detail)
                raise
            self.timeline.record(lane, "processed", key=item.key, detail=detail)
        return process


def run_outage(broker: BrokerHandle, pipelines: Sequence[Pipeline], dependency: Dependency,
               config: OutageConfig, timeline: Timeline | None = None) -> OutageRun:
    """Run the outage against every pipeline at once; stop them all on every exit path."""
    timeline = timeline or Timeline()
    items = config.items()
    run = OutageRun(config=config, timeline=timeline, pipelines=[p.name for p in pipelines],
                    items=items)
    done: dict[str, set[int]] = {p.name: set() for p in pipelines}
    lock = threading.Lock()

    def tracker(name: str, process: ProcessFn) -> ProcessFn:
        def wrapped(item: WorkItem, attempt: int) -> None:
            process(item, attempt)
            with lock:
                done[name].add(item.seq)
        return wrapped

    def dead(name: str) -> DeadLetterFn:
        def on_dead_letter(seq: int) -> None:
            with lock:
                done[name].add(seq)
        return on_dead_letter

    started: list[Pipeline] = []
    producer = KafkaProducer(**broker.clients(linger_ms=0))
    try:
        for p in pipelines:
            started.append(p)
            if hasattr(p, "timeline"):
                p.timeline = timeline
            p.start(tracker(p.name, run.handler_for(p.name, dependency)), dead(p.name))
        t_first = time.monotonic()
        dependency.schedule(t_first + config.outage_start_s,
                            t_first + config.outage_start_s + config.outage_s)
        timeline.interval("dependency", "outage", dependency.down_from, dependency.down_until)
        run.outage_t = (timeline.to_t(dependency.down_from), timeline.to_t(dependency.down_until))
        gap = 1.0 / config.rate_per_s
        for i, item in enumerate(items):
            delay = t_first + i * gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            run.produce_t[item.seq] = timeline.now()
            futures = []
            for p in pipelines:
                key, value, headers = p.encode(item)
                futures.append(producer.send(p.main_topic, key=key, value=value, headers=headers))
            timeline.record("producer", "produced", key=item.key,
                            detail={"seq": item.seq, "needs_dependency": item.needs_dependency})
            for future in futures:
                future.get(timeout=30)
        deadline = Deadline(config.drain_timeout_s)
        while not deadline.expired():
            with lock:
                if all(len(s) == len(items) for s in done.values()):
                    break
            time.sleep(0.05)
        with lock:
            run.finished = {name: len(s) == len(items) for name, s in done.items()}
        run.producing_t = (timeline.to_t(t_first), timeline.now())
    finally:
        producer.close()
        for p in reversed(started):
            try:
                p.stop()
            except Exception:  # stop the others all the same
                log.exception("could not stop pipeline %s", p.name)
    for p in pipelines:
        seqs = sorted(p.decode_dead_letter(r.value) for r in read_topic(broker, p.dead_letter_topic))
        run.dead_letters[p.name] = seqs
        for seq in seqs:
            timeline.record(p.name, "dead_lettered", detail={"seq": seq})
    return run
