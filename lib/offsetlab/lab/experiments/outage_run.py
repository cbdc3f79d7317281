"""The outage run: every pipeline at once against the same broker, producer and outage.

:func:`run_outage` starts the pipelines, schedules the dependency's outage, produces the
:class:`~offsetlab.lab.experiments.outage_scenario.OutageConfig`'s work items to every
pipeline's main topic at ``rate_per_s``, waits until every item was processed or
dead-lettered (or ``drain_timeout_s``), stops the pipelines and reads their dead-letter topics
and the records of the topics their handlers read (:func:`read_deliveries`) back from the
broker. :class:`OutageRun` is what it recorded; its :meth:`OutageRun.handler_for`
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
from offsetlab.bus.headers import attempt_of
from offsetlab.lab.experiments.outage_raw import RETRY_COUNT_HEADER
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

__all__ = ["OutageRun", "run_outage", "read_deliveries", "attempt_of_record"]


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
    #: per pipeline, read back from the broker after the run: seq -> the attempt numbers of
    #: its records on the topics its handler reads (original 1, each copy its header), sorted
    #: -- the deliveries the broker holds, independent of the handler's own recording
    deliveries_read: dict[str, dict[int, list[int]]] = field(default_factory=dict)

    def handler_calls(self, lane: str) -> dict[int, int]:
        """seq -> the handler calls ``lane`` recorded (processed or failed)."""
        counts: dict[int, int] = {}
        for e in self.timeline.rows():
            if e.who == lane and e.what in ("processed", "failed"):
                assert isinstance(e.detail, dict)
                seq = int(e.detail["seq"])
                counts[seq] = counts.get(seq, 0) + 1
        return dict(sorted(counts.items()))

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
        run.deliveries_read[p.name] = read_deliveries(broker, p)
    return run


def attempt_of_record(headers: Sequence[tuple[str, bytes | None]] | None) -> int:
    """The delivery number a record on a handled topic stands for: the seed's ``retry-count``
    + 1 where it carries one, else the adapter's ``offsetlab-attempt`` (1 when absent)."""
    raw = dict(headers or []).get(RETRY_COUNT_HEADER)
    return int(raw) + 1 if raw else attempt_of(headers or [])


def read_deliveries(broker: BrokerHandle, pipeline: Pipeline) -> dict[int, list[int]]:
    """seq -> sorted attempt numbers of its records on ``pipeline.handled_topics()``, read
    back from the broker."""
    out: dict[int, list[int]] = {}
    for topic in pipeline.handled_topics():
        for record in read_topic(broker, topic):
            out.setdefault(pipeline.decode_dead_letter(record.value), []).append(
                attempt_of_record(record.headers))
    return {seq: sorted(a) for seq, a in sorted(out.items())}
