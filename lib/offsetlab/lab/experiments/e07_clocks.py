"""E07: which clock removes a worker whose handler blocks, as the broker tells it.

Two clocks guard a member's place in a classic group: the broker's session timeout (no
heartbeat for ``session_timeout_ms``) and the max poll interval (kafka-python leaves the group
when the application has not called ``poll()`` for ``max_poll_interval_ms``, and sends that
value as the rebalance timeout the broker gives a member to rejoin). With the two close
together (6.0 s against 6.5 s) a removal cannot say which acted; here they are far apart, both
ways round, and the handler blocks longer than both:

- **sleeping**: the worker is alone in its group with the topic's one partition, gets a
  record and sleeps ``sleep_s`` in its handler (no ``poll()`` meanwhile);
- **rebalancing**: the same, and ``joiner_after_s`` into the sleep a second member joins the
  group, so the group is rebalancing while the worker blocks: its rejoin cannot complete
  before it calls ``poll()`` again.

What the broker did is read from its log (:mod:`offsetlab.lab.broker_log`), never from the
parameters: the worker's removal and its reason (an explicit ``LeaveGroup`` from the client,
a heartbeat expiry, a rebalance's join or sync timeout) land in :attr:`ClockRun.events`;
:mod:`~offsetlab.lab.experiments.e07_findings` judges them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.transports.kafka_python import compat
from offsetlab.lab.broker_log import GroupLogEvent, group_events, log_size, read_log
from offsetlab.lab.experiments.e07_watch import GroupNeverSettled
from offsetlab.lab.raw import create_topic, unique
from offsetlab.lab.timeline import Timeline, TimelineRebalanceListener

__all__ = ["ClockCase", "ClockRun", "clock_cases", "run_clock_case", "run_clock_cases",
           "WORKER", "JOINER"]

#: the client ids (kafka-python member ids start with the client id and a dash)
WORKER, JOINER = "worker", "joiner"


@dataclass(frozen=True, kw_only=True)
class ClockCase:
    """One setting of the two clocks and what the worker meets while it blocks."""

    session_timeout_ms: int
    max_poll_interval_ms: int
    sleep_s: float
    rebalance: bool = False
    joiner_after_s: float = 3.0
    heartbeat_interval_ms: int = 1000
    settle_timeout_s: float = 15.0

    def __post_init__(self) -> None:
        longest_s = max(self.session_timeout_ms, self.max_poll_interval_ms) / 1000
        if self.sleep_s <= longest_s:
            raise ConfigError(f"ClockCase.sleep_s={self.sleep_s} must exceed both clocks "
                              f"({longest_s:g} s): the question is which one acts first")
        shorter = min(self.session_timeout_ms, self.max_poll_interval_ms)
        if shorter * 2 > longest_s * 1000:
            raise ConfigError(f"ClockCase: session_timeout_ms={self.session_timeout_ms} and "
                              f"max_poll_interval_ms={self.max_poll_interval_ms} must differ by a "
                              f"factor of 2 or more, or a removal cannot tell which one acted")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ConfigError(f"ClockCase.heartbeat_interval_ms={self.heartbeat_interval_ms} must be "
                              f"at most session_timeout_ms / 3 ({self.session_timeout_ms // 3})")
        if self.rebalance and not 0 < self.joiner_after_s < self.sleep_s:
            raise ConfigError(f"ClockCase.joiner_after_s={self.joiner_after_s} must fall inside "
                              f"the sleep (0 < joiner_after_s < {self.sleep_s})")

    @property
    def name(self) -> str:
        """``"sleeping, session 6 s < max poll 15 s"`` (the findings' prefix)."""
        s, p = self.session_timeout_ms / 1000, self.max_poll_interval_ms / 1000
        order = "<" if s < p else ">"
        return f"{'rebalancing' if self.rebalance else 'sleeping'}, session {s:g} s {order} max poll {p:g} s"

    def consumer_settings(self) -> dict[str, Any]:
        return {"session_timeout_ms": self.session_timeout_ms,
                "heartbeat_interval_ms": self.heartbeat_interval_ms,
                "max_poll_interval_ms": self.max_poll_interval_ms,
                "auto_offset_reset": "earliest", "enable_auto_commit": False}


def clock_cases(*, short_ms: int, long_ms: int, sleep_s: float, rebalance: bool = False,
                joiner_after_s: float = 3.0, heartbeat_interval_ms: int = 1000) -> list[ClockCase]:
    """The two settings, both ways round: session short / max poll long, and the reverse."""
    return [ClockCase(session_timeout_ms=s, max_poll_interval_ms=p, sleep_s=sleep_s,
                      rebalance=rebalance, joiner_after_s=joiner_after_s,
                      heartbeat_interval_ms=heartbeat_interval_ms)
            for s, p in ((short_ms, long_ms), (long_ms, short_ms))]


@dataclass
class ClockRun:
    """One run of a case: the worker's sleep (wall-clock, epoch seconds), when the joiner
    started, and the broker log's events of the group."""

    case: ClockCase
    group: str
    topic: str
    timeline: Timeline = field(default_factory=Timeline)
    sleep_start: float | None = None
    sleep_end: float | None = None
    joiner_at: float | None = None
    events: list[GroupLogEvent] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    join_retries: int = 0


class _Member(threading.Thread):
    """A raw consumer on its own thread; the worker sleeps on its first record."""

    def __init__(self, who: str, broker: BrokerHandle, run: ClockRun, stop: threading.Event,
                 *, sleeps: bool) -> None:
        super().__init__(name=f"e07-clock-{who}-{run.group}", daemon=True)
        self.who, self.broker, self.run_, self.stop, self.sleeps = who, broker, run, stop, sleeps
        self.assigned = threading.Event()
        self.woke = threading.Event()

    def run(self) -> None:
        r, tl = self.run_, self.run_.timeline
        consumer = None
        try:
            consumer = compat.warmed_consumer([r.topic], snapshot=True)(
                client_id=self.who, group_id=r.group,
                **self.broker.clients(**r.case.consumer_settings()))
            member = self

            class Track(TimelineRebalanceListener):
                def on_partitions_assigned(self, assigned: Any) -> None:
                    super().on_partitions_assigned(assigned)
                    if assigned:
                        member.assigned.set()

            consumer.subscribe([r.topic], listener=Track(tl, self.who))
            while not self.stop.is_set():
                batch = consumer.poll(timeout_ms=100)
                if batch and self.sleeps and r.sleep_start is None:
                    r.sleep_start = time.time()
                    with tl.span(self.who, "sleep"):
                        time.sleep(r.case.sleep_s)  # the handler blocks: no poll()
                    r.sleep_end = time.time()
                    self.woke.set()
                    return  # what follows the sleep is not this question
        except Exception as exc:  # noqa: BLE001 - recorded, the run reports it
            r.errors[self.who] = f"{type(exc).__name__}: {exc}"
        finally:
            if consumer is not None:
                consumer.close()


def _once(broker: BrokerHandle, case: ClockCase) -> ClockRun:
    run = ClockRun(case=case, group=unique("e07-clock-group"),
                   topic=create_topic(broker, unique("e07-clock"), 1))
    start = log_size(broker.log_path)
    stop = threading.Event()
    worker = _Member(WORKER, broker, run, stop, sleeps=True)
    joiner = _Member(JOINER, broker, run, stop, sleeps=False)
    try:
        worker.start()
        if not worker.assigned.wait(case.settle_timeout_s):
            raise GroupNeverSettled(f"E07 clocks: the worker held no partition after "
                                    f"{case.settle_timeout_s} s ({run.errors or 'no error'})")
        producer = KafkaProducer(**broker.clients())
        try:
            producer.send(run.topic, key=b"key-0", value=b"message 0").get(timeout=30)
        finally:
            producer.close()
        deadline = Deadline(case.settle_timeout_s)
        while run.sleep_start is None and not deadline.expired() and not run.errors:
            time.sleep(0.02)
        if run.errors:
            raise RuntimeError(f"E07 clocks: a member failed: {run.errors}")
        if run.sleep_start is None:  # a join kafka-python never finished: start again
            raise GroupNeverSettled(f"E07 clocks: the worker got no record within "
                                    f"{case.settle_timeout_s} s of its assignment")
        if case.rebalance:
            time.sleep(max(0.0, run.sleep_start + case.joiner_after_s - time.time()))
            run.joiner_at = time.time()
            run.timeline.record(JOINER, "started")
            joiner.start()
        worker.woke.wait(case.sleep_s + 30)
        time.sleep(0.5)  # the broker's lines of the sleep's last moments
    finally:
        stop.set()
        for m in (worker, joiner):
            if m.is_alive() or m.ident is not None:
                m.join(timeout=30)
    if broker.log_path is not None:
        run.events = group_events(read_log(broker.log_path, start), run.group)
    return run


def run_clock_case(broker: BrokerHandle, case: ClockCase, tries: int = 3) -> ClockRun:
    """One run of ``case`` on ``broker`` (its ``log_path`` is read); started again on fresh
    names when kafka-python never lets the group form (:class:`GroupNeverSettled`)."""
    for attempt in range(tries):
        try:
            run = _once(broker, case)
        except GroupNeverSettled:
            if attempt == tries - 1:
                raise
            continue
        run.join_retries = attempt
        return run
    raise AssertionError("unreachable")


def run_clock_cases(broker: BrokerHandle, cases: Sequence[ClockCase],
                    repeats: int) -> dict[str, list[ClockRun]]:
    """Every case ``repeats`` times, side by side (own topics and groups; at most 12 at a
    time), by case name in the order given."""
    jobs = [(c, i) for c in cases for i in range(repeats)]
    with ThreadPoolExecutor(max_workers=min(len(jobs), 12), thread_name_prefix="e07-clock") as pool:
        futures = [pool.submit(run_clock_case, broker, c) for c, _ in jobs]
        runs = [f.result() for f in futures]
    out: dict[str, list[ClockRun]] = {c.name: [] for c in cases}
    for (c, _), run in zip(jobs, runs, strict=True):
        out[c.name].append(run)
    return out
