"""The matrix's liveness rows, run: a handler that blocks, a paused member, a member that
pauses on a failing dependency, a pause across a rebalance. One driver per behaviour::

    run_<behaviour>(broker, client, group_protocol, params, *, timeline, log_dir) -> Cell

Each driver owns its topic and group, starts its members (:class:`ChildMember`) and stops
them in ``finally`` in its own thread, reads the broker's log from a byte offset taken
before it started (:mod:`offsetlab.lab.broker_log`) and computes the cell's value from the
members' events and those lines (:mod:`~offsetlab.lab.clients.conformance_liveness_values`).
:func:`run_family` runs every (behaviour, column) at once on one broker started with
:data:`BROKER_SETTINGS`.

The clocks (:class:`LivenessParams`): session 5 s against max poll 15 s and the reverse, a
24 s block. Under the consumer protocol (KIP-848) the session is the group's, set on the
broker per group (:mod:`~offsetlab.lab.clients.kip848`), and a librdkafka member that passes
its max poll interval is fenced by the broker one session later, ``max poll + session``
(20 s) into the block: the block outlasts that by the reader's 3 s slack, and 5 s apart
from 15 s keeps each expiry's two explanations (5 s / 20 s; 15 s / 20 s) more than the
slack apart. 3 s against 9 s would not: 9 s and 12 s overlap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.broker_log import GroupLogEvent, group_events, log_size, read_log
from offsetlab.lab.clients import conformance_liveness_values as vals
from offsetlab.lab.clients import kip848
from offsetlab.lab.clients.child import ChildMember
from offsetlab.lab.clients.matrix import COLUMNS, NOT_APPLICABLE, Cell
from offsetlab.lab.clients.protocol import HandlerSpec, MemberConfig
from offsetlab.lab.raw import create_topic, unique
from offsetlab.lab.timeline_core import Timeline

log = logging.getLogger(__name__)

__all__ = ["BEHAVIOURS", "BROKER_SETTINGS", "LivenessParams", "FamilyFailed", "MemberRefused",
           "run_family", "run_cell",
           "run_sleep_evicted_by_session_first", "run_sleep_evicted_by_max_poll_first",
           "run_pause_keeps_membership", "run_pause_on_error_keeps_membership",
           "run_pause_survives_rebalance"]

BEHAVIOURS = ("sleep_evicted_by_session_first", "sleep_evicted_by_max_poll_first",
              "pause_keeps_membership", "pause_on_error_keeps_membership",
              "pause_survives_rebalance")
#: the broker this family needs: short sessions for both protocols (kip848's settings)
BROKER_SETTINGS: dict[str, Any] = dict(kip848.BROKER_SETTINGS)


@dataclass(frozen=True, kw_only=True)
class LivenessParams:
    short_ms: int = 5000           # the shorter clock of the sleep cases
    long_ms: int = 15000           # the longer one (factor 3)
    block_s: float = 24.0          # the blocked handler (> long + short + 3 s slack)
    heartbeat_ms: int = 1000
    pause_session_ms: int = 5000   # the pause cases' clocks
    pause_max_poll_ms: int = 8000
    pause_s: float = 12.0          # paused / dependency down this long (> both)
    per_partition: int = 3         # messages produced to each partition
    settle_s: float = 60.0         # generous: waits for joins and deliveries
    #: KafkaJS heartbeats from its fetch loop, and an idle fetch waits maxWaitTimeInMs (5000 by
    #: default): with a 5 s session even an unpaused idle KafkaJS member was removed by its
    #: session (measured); 1000 lets an idle member heartbeat every second or so
    kafkajs_max_wait_ms: int = 1000

    def __post_init__(self) -> None:
        if self.long_ms < 2 * self.short_ms:
            raise ValueError("the two clocks must be a factor 2+ apart")
        if self.block_s < (self.long_ms + self.short_ms) / 1000 + 3:
            raise ValueError("block_s must outlast max poll + session + 3 s (the KIP-848 path)")
        if self.pause_s <= max(self.pause_session_ms, self.pause_max_poll_ms) / 1000:
            raise ValueError("pause_s must outlast both clocks")


_ABBR = {"kafka-python": "kp", "kafkajs": "kjs", "confluent-kafka": "ck"}


def _column(client: str, proto: str) -> str:
    return _ABBR[client] + ("848" if proto == "consumer" else "")


class MemberRefused(RuntimeError):
    """A member's client refused to start (a fatal ``error`` event at ``start``)."""


class _Scenario:
    """One driver's topic, group, members and broker-log offset; members stop in close()."""

    def __init__(self, broker: BrokerHandle, client: str, proto: str, tag: str, partitions: int,
                 timeline: Timeline, log_dir: Path | str | None) -> None:
        self.broker, self.client, self.proto = broker, client, proto
        self.timeline, self.log_dir = timeline, log_dir
        self.prefix = f"{tag}-{_column(client, proto)}"
        self.topic = create_topic(broker, unique(f"live-{self.prefix}"), partitions)
        self.group = unique(f"live-{self.prefix}")
        self.log_start = log_size(broker.log_path)
        self.members: dict[str, ChildMember] = {}
        self.produced: list[str] = []

    def member(self, name: str, *, session_ms: int, max_poll_ms: int | None,
               heartbeat_ms: int, handler: HandlerSpec, kafkajs_max_wait_ms: int) -> ChildMember:
        classic = self.proto == "classic"
        if not classic and not self.members:
            kip848.set_group_session(self.broker, self.group, session_ms,
                                     heartbeat_interval_ms=heartbeat_ms)
        cfg = MemberConfig(
            client=self.client, who=f"{self.prefix}-{name}", bootstrap=self.broker.bootstrap_servers,
            group=self.group, topics=[self.topic], group_protocol=self.proto,
            session_timeout_ms=session_ms if classic else None,
            heartbeat_interval_ms=heartbeat_ms if classic else None,
            max_poll_interval_ms=None if self.client == "kafkajs" else max_poll_ms,
            handler=handler,
            extra={"consumer": {"maxWaitTimeInMs": kafkajs_max_wait_ms}} if self.client == "kafkajs" else {})
        m = ChildMember(cfg, self.timeline, log_dir=self.log_dir)
        self.members[name] = m
        return m.start()

    def produce(self, partitions: Sequence[int], per_partition: int) -> float:
        """Produce and flush; returns the wall-clock time just before the first send."""
        producer = KafkaProducer(**self.broker.clients())
        sent_at = time.time()  # before the first send (closing the producer may take a while)
        try:
            for p in partitions:
                for i in range(per_partition):
                    value = f"{self.prefix} p{p} m{i} {len(self.produced)}"
                    producer.send(self.topic, value=value.encode(), key=f"k{p}".encode(), partition=p)
                    self.produced.append(value)
            producer.flush(30)
        finally:
            producer.close()
        return sent_at

    def wait_holding(self, names: Sequence[str], timeout_s: float,
                     until: Callable[[], bool] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.members[n].holds() for n in names) and (until is None or until()):
                return
            for n in names:
                refused = self.members[n].seen("error", lambda e: bool(e.get("fatal")))
                if refused:
                    raise MemberRefused(f"{self.members[n].config.client}: {refused[0].get('error')}")
            if any(not self.members[n].alive for n in names):
                break
            time.sleep(0.1)
        raise TimeoutError(f"{self.prefix}: members {list(names)} did not hold partitions within "
                           f"{timeout_s:.0f} s (holds: { {n: sorted(self.members[n].holds()) for n in names} }, "
                           f"stderr in {self.log_dir})")

    def log_events(self) -> list[GroupLogEvent]:
        if self.broker.log_path is None:
            return []
        return group_events(read_log(self.broker.log_path, self.log_start), self.group)

    def events(self) -> dict[str, list[dict[str, Any]]]:
        return {m.who: list(m.events) for m in self.members.values()}

    def cell(self, behaviour: str, value: Any, evidence: str) -> Cell:
        return Cell(behaviour=behaviour, client=self.client, group_protocol=self.proto,
                    broker="kafka", value=value, evidence=f"{self.group}: {evidence}")

    def close(self) -> None:
        for m in self.members.values():
            try:
                m.close()
            except Exception:  # noqa: BLE001 - every member is stopped; the first error is logged
                log.exception("stopping %s", m.who)


# -- the blocked handler ------------------------------------------------------------------------
def _run_sleep(behaviour: str, session_ms: int, max_poll_ms: int, broker: BrokerHandle,
               client: str, proto: str, p: LivenessParams, timeline: Timeline,
               log_dir: Path | str | None) -> Cell:
    mp = None if client == "kafkajs" else max_poll_ms
    s = _Scenario(broker, client, proto, "sess" if session_ms < max_poll_ms else "mpoll", 1,
                  timeline, log_dir)
    try:
        a = s.member("a", session_ms=session_ms, max_poll_ms=mp, heartbeat_ms=p.heartbeat_ms,
                     handler=HandlerSpec(block_first_s=p.block_s),
                     kafkajs_max_wait_ms=p.kafkajs_max_wait_ms)
        try:
            s.wait_holding(["a"], p.settle_s)
        except MemberRefused as exc:  # librdkafka (classic) wants max.poll.interval.ms >= session
            return s.cell(behaviour, "config refused",
                          f"the client refused session {session_ms} ms with max poll {mp} ms at "
                          f"start: {exc}")
        produced_at = s.produce([0], 1)
        done = a.wait_for("handled", timeout_s=p.block_s + p.settle_s)
        time.sleep(1.0)  # the broker's lines of the block's last moment
    finally:
        s.close()
    # the handler slept block_s before it reported the message handled: the block's start is
    # that report minus the sleep (never before the message was produced). KafkaJS reports its
    # heartbeats (and joins): its session is counted from the last of them before the block
    end = float(done["at"])
    start = max(produced_at, end - p.block_s)
    value, evidence = vals.sleep_value(s.log_events(), block_start=start, block_end=end,
                                       session_s=session_ms / 1000,
                                       max_poll_s=None if mp is None else mp / 1000,
                                       heartbeat_s=p.heartbeat_ms / 1000,
                                       member_events=list(a.events) if client == "kafkajs" else [])
    errors = sorted({str(e.get("error"))[:90] for e in a.events
                     if e.get("event") in ("error", "commit_failed") and float(e["at"]) >= start})
    return s.cell(behaviour, value, f"{evidence}; the member's errors from the block on: "
                                    f"{errors or 'none'}")


def run_sleep_evicted_by_session_first(broker: BrokerHandle, client: str, group_protocol: str,
                                       params: LivenessParams, *, timeline: Timeline,
                                       log_dir: Path | str | None = None) -> Cell:
    return _run_sleep("sleep_evicted_by_session_first", params.short_ms, params.long_ms, broker,
                      client, group_protocol, params, timeline, log_dir)


def run_sleep_evicted_by_max_poll_first(broker: BrokerHandle, client: str, group_protocol: str,
                                        params: LivenessParams, *, timeline: Timeline,
                                        log_dir: Path | str | None = None) -> Cell:
    behaviour = "sleep_evicted_by_max_poll_first"
    if client == "kafkajs":
        return Cell(behaviour=behaviour, client=client, group_protocol=group_protocol,
                    broker="kafka", value=NOT_APPLICABLE,
                    evidence="KafkaJS has no max poll interval (its consumer has no such setting)")
    return _run_sleep(behaviour, params.long_ms, params.short_ms, broker, client,
                      group_protocol, params, timeline, log_dir)


# -- pauses -------------------------------------------------------------------------------------
def _two(s: _Scenario, p: LivenessParams, handler: HandlerSpec) -> tuple[ChildMember, ChildMember]:
    kw = dict(session_ms=p.pause_session_ms, max_poll_ms=p.pause_max_poll_ms,
              heartbeat_ms=p.heartbeat_ms, handler=handler, kafkajs_max_wait_ms=p.kafkajs_max_wait_ms)
    a, b = s.member("a", **kw), s.member("b", **kw)  # type: ignore[arg-type]
    s.wait_holding(["a", "b"], p.settle_s)
    time.sleep(1.0)  # a last rebalance round of the two joins settles
    s.wait_holding(["a", "b"], p.settle_s)
    return a, b


def run_pause_keeps_membership(broker: BrokerHandle, client: str, group_protocol: str,
                               params: LivenessParams, *, timeline: Timeline,
                               log_dir: Path | str | None = None) -> Cell:
    behaviour = "pause_keeps_membership"
    s = _Scenario(broker, client, group_protocol, "pause", 2, timeline, log_dir)
    try:
        a, b = _two(s, params, HandlerSpec())
        paused = a.holds()
        a.pause(None)
        start = float(a.wait_for("pause", timeout_s=params.settle_s)["at"])
        s.produce([0, 1], params.per_partition)
        time.sleep(max(0.0, start + params.pause_s - time.time()))
        end = time.time()
    finally:
        s.close()
    k = vals.membership_kept(s.log_events(), s.events(), paused_member=a.who, paused=paused,
                             start=start, end=end)
    return s.cell(behaviour, k.kept, k.evidence("paused", end - start))


def run_pause_on_error_keeps_membership(broker: BrokerHandle, client: str, group_protocol: str,
                                        params: LivenessParams, *, timeline: Timeline,
                                        log_dir: Path | str | None = None) -> Cell:
    behaviour = "pause_on_error_keeps_membership"
    on_fail = "pause_and_throw" if client == "kafkajs" else "pause_and_seek"
    s = _Scenario(broker, client, group_protocol, "perr", 2, timeline, log_dir)
    try:
        a, b = _two(s, params, HandlerSpec(on_fail=on_fail, retry_after_s=1.0))
        mine = a.holds()
        a.dependency(False)
        start = time.time()
        s.produce(sorted(p for _, p in mine), params.per_partition)
        s.produce(sorted(p for _, p in b.holds()), params.per_partition)
        # the outage lasts pause_s as the handler sees it: from its first failure (under load
        # the messages arrived up to 19 s after `start`, and KafkaJS then saw a 5 s outage)
        first_failure = float(a.wait_for("handler_failed", timeout_s=params.settle_s)["at"])
        time.sleep(max(0.0, max(start, first_failure) + params.pause_s - time.time()))
        a.dependency(True)
        up = time.time()
        deadline = time.monotonic() + params.settle_s
        while vals.lost_values(s.produced, s.events()) and time.monotonic() < deadline:
            time.sleep(0.2)
        end = time.time()
    finally:
        s.close()
    events = s.events()
    k = vals.membership_kept(s.log_events(), events, paused_member=a.who, paused=mine,
                             start=start, end=end)
    lost = vals.lost_values(s.produced, events)
    failed = len([e for e in events[a.who] if e.get("event") == "handler_failed"])
    pauses = len([e for e in events[a.who] if e.get("event") == "pause"])
    crashes = [f"{e.get('error')} (restart {e.get('restart')}) at {float(e['at']) - start:.1f} s"
               for e in events[a.who] if e.get("event") == "crash"]
    evidence = (k.evidence(f"{on_fail}, dependency down", up - start)
                + f" (the first handler failure {first_failure - start:.1f} s in)"
                + f"; {failed} handler failures, {pauses} pauses, crashes {crashes or 'none'}; lost {len(lost)} of "
                  f"{len(s.produced)} messages {up and round(end - up, 1)} s after it came back")
    return s.cell(behaviour, k.kept and not lost, evidence)


def run_pause_survives_rebalance(broker: BrokerHandle, client: str, group_protocol: str,
                                 params: LivenessParams, *, timeline: Timeline,
                                 log_dir: Path | str | None = None) -> Cell:
    behaviour = "pause_survives_rebalance"
    s = _Scenario(broker, client, group_protocol, "preb", 4, timeline, log_dir)
    kw = dict(session_ms=params.pause_session_ms, max_poll_ms=params.pause_max_poll_ms,
              heartbeat_ms=params.heartbeat_ms, handler=HandlerSpec(),
              kafkajs_max_wait_ms=params.kafkajs_max_wait_ms)
    try:
        a = s.member("a", **kw)  # type: ignore[arg-type]
        s.wait_holding(["a"], params.settle_s, until=lambda: len(s.members["a"].holds()) == 4)
        a.pause(None)
        a.wait_for("pause", timeout_s=params.settle_s)
        b = s.member("b", **kw)  # type: ignore[arg-type]
        s.wait_holding(["a", "b"], params.settle_s,
                       until=lambda: len(a.holds()) + len(b.holds()) == 4 and len(a.holds()) < 4)
        time.sleep(2.0)  # the rebalance's last round (eager clients rejoin once more)
        kept = a.holds()
        since = time.time()
        s.produce([0, 1, 2, 3], params.per_partition)
        want = params.per_partition * len(b.holds())
        deadline = time.monotonic() + params.settle_s
        while len(vals.handled_in(b.events, since, time.time() + 1)) < want and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(4.0)  # as long again for the paused member's fetches
        until = time.time()
    finally:
        s.close()
    value, evidence = vals.pause_survived(s.events()[a.who], s.events()[b.who], kept=kept,
                                          since=since, until=until)
    return s.cell(behaviour, value, evidence)


RUNNERS: dict[str, Callable[..., Cell]] = {
    "sleep_evicted_by_session_first": run_sleep_evicted_by_session_first,
    "sleep_evicted_by_max_poll_first": run_sleep_evicted_by_max_poll_first,
    "pause_keeps_membership": run_pause_keeps_membership,
    "pause_on_error_keeps_membership": run_pause_on_error_keeps_membership,
    "pause_survives_rebalance": run_pause_survives_rebalance,
}


def run_cell(behaviour: str, broker: BrokerHandle, client: str, group_protocol: str,
             params: LivenessParams, *, timeline: Timeline, log_dir: Path | str | None = None,
             tries: int = 2) -> Cell:
    """One cell, started again on fresh names when a member never held partitions."""
    for attempt in range(tries):
        try:
            return RUNNERS[behaviour](broker, client, group_protocol, params, timeline=timeline,
                                      log_dir=log_dir)
        except TimeoutError:
            if attempt == tries - 1:
                raise
            log.warning("%s on %s/%s: a wait timed out; once more", behaviour, client, group_protocol)
    raise AssertionError("unreachable")


class FamilyFailed(RuntimeError):
    """Some cells of :func:`run_family` failed; ``cells`` holds the others, ``failures`` the
    (behaviour, client, group_protocol, error) of the failed ones."""

    def __init__(self, cells: list[Cell], failures: list[tuple[str, str, str, str]]) -> None:
        super().__init__(f"{len(failures)} liveness cells failed: {failures}")
        self.cells, self.failures = cells, failures


def run_family(broker: BrokerHandle, params: LivenessParams | None = None,
               columns: Sequence[tuple[str, str]] = COLUMNS, *, timeline: Timeline,
               log_dir: Path | str | None = None, max_workers: int | None = None,
               behaviours: Sequence[str] = BEHAVIOURS) -> list[Cell]:
    """Every (behaviour, column) at once, each in its own thread (which starts and stops its
    members); cells in (behaviour, column) order. Raises :class:`FamilyFailed` (with the
    cells that did come out) when any failed, after every job ended."""
    p = params or LivenessParams()
    jobs = [(b, c, g) for b in behaviours for c, g in columns]
    with ThreadPoolExecutor(max_workers=max_workers or len(jobs),
                            thread_name_prefix="liveness") as pool:
        futures = [pool.submit(run_cell, b, broker, c, g, p, timeline=timeline, log_dir=log_dir)
                   for b, c, g in jobs]
        cells, failures = [], []
        for (b, c, g), f in zip(jobs, futures, strict=True):
            try:
                cells.append(f.result())
            except Exception as exc:  # noqa: BLE001 - reported with the others below
                log.exception("liveness cell %s on %s/%s failed", b, c, g)
                failures.append((b, c, g, f"{type(exc).__name__}: {exc}"))
    if failures:
        raise FamilyFailed(cells, failures)
    return cells
