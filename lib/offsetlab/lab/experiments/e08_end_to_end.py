"""E08: the event bus end to end -- the seed's backup service on two buses, one interface.

The seed's "mapping concepts": a use case accepts a backup request, the aggregate raises an
event, ``publish_for_aggregate`` publishes it, a subscriber runs the next use case, which
calls a dependency (the backup-job service) that can be made slow, down, or fed bad data.
:mod:`offsetlab.backups` is that service; ``bootstrap(bus)`` wires it onto any
:class:`~offsetlab.bus.interface.EventBus`.

:func:`run_story` plays one story on a *driver* (the bus plus how time passes on it):

1. **healthy**: ``a1`` (a job that allows on-demand backups) is sent, ``a2`` (a job that
   does not) ends ``not_allowed``;
2. **slow**: the dependency answers later than its timeout (``TimeoutError``, retriable);
   ``s1`` is retried (re-produced with attempt + 1) until the breaker opens, the check
   subscription pauses; the dependency recovers, the alive check half-opens the breaker,
   the trial call succeeds, ``s1`` is sent;
3. **bad data**: the answer lacks fields (``ValueError``, fatal): ``b1`` is dead-lettered
   after one attempt, the breaker stays closed (bad data is not "down");
4. **down**: ``ConnectionError``; ``c0..c2`` are accepted, ``failure_threshold`` calls fail,
   the breaker opens, the rest are held (paused), nothing is called while it is open; the
   dependency comes back and all three are sent.

:class:`MemoryDriver` runs it on :class:`~offsetlab.bus.memory.InMemoryBus` in simulated
time (deterministic); :class:`KafkaDriver` on the Kafka bus in real time. :class:`FinalState`
is what must be equal on both; everything the buses did is on a
:class:`~offsetlab.lab.timeline.Timeline` (lanes: ``publish``, one per subscription,
``backup-jobs`` with its mode intervals and calls, ``breaker``). The drivers live in
:mod:`~offsetlab.lab.experiments.e08_drivers` (re-exported here).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from offsetlab.backups import (
    BackupJobDependency,
    BackupRequestCreated,
    BackupService,
    DependencyMode,
    bootstrap,
)
from offsetlab.bus.breaker import BreakerState, BreakerTransition, CircuitBreaker
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.headers import parse_provenance
from offsetlab.bus.interface import Activity, ActivityKind
from offsetlab.bus.memory import InMemoryBus
from offsetlab.bus.retry import MainTopicRetry, dead_letter_topic
from offsetlab.lab.experiments.e08_drivers import Driver, KafkaDriver, MemoryDriver
from offsetlab.lab.timeline import Timeline

__all__ = [
    "StoryParams",
    "Driver",
    "MemoryDriver",
    "KafkaDriver",
    "FinalState",
    "StoryResult",
    "run_story",
    "run_on_memory",
    "run_on_kafka",
    "summary",
    "activity_table",
    "plot_stories",
]


@dataclass(frozen=True, kw_only=True)
class StoryParams:
    """One E08 story. ``slow_s`` must exceed ``dependency_timeout_s`` (slow = times out)."""

    failure_threshold: int = 2
    probe_interval_s: float = 1.0
    dependency_timeout_s: float = 0.2
    slow_s: float = 1.0
    max_retries: int = 5
    partitions: int = 3
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        for key in ("failure_threshold", "max_retries", "partitions"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "max_retries" else 1):
                raise ConfigError(f"StoryParams.{key}={value!r}: give an int >= 1 (max_retries >= 0)")
        if self.max_retries < self.failure_threshold:
            raise ConfigError(
                f"StoryParams.max_retries={self.max_retries} must be >= failure_threshold="
                f"{self.failure_threshold}: the breaker must open before a retried request "
                "is given up (dead-lettered)")
        for key in ("probe_interval_s", "dependency_timeout_s", "timeout_s"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"StoryParams.{key} must be > 0")
        if self.slow_s <= self.dependency_timeout_s:
            raise ConfigError(
                f"StoryParams.slow_s={self.slow_s} must exceed dependency_timeout_s="
                f"{self.dependency_timeout_s} (the slow phase is about a call that times out)")



@dataclass(frozen=True)
class FinalState:
    """What must be equal on both buses: where every request ended, not how fast."""

    statuses: tuple[tuple[str, str], ...]
    sent: tuple[str, ...]
    dead_letters: tuple[tuple[str, str, int], ...]  # (request id, exception class, attempt)
    breaker_states: tuple[str, ...]
    breaker_now: str
    pending_events: int
    #: the story's steps whose condition did not hold within ``timeout_s`` (the story goes on
    #: to the next step, so that a bus that diverges still ends with a state to compare)
    unfinished_steps: tuple[str, ...] = ()


@dataclass
class StoryResult:
    bus: str
    params: StoryParams
    timeline: Timeline
    final: FinalState
    activities: list[Activity] = field(default_factory=list)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (job, mode, result)
    phase_calls: dict[str, int] = field(default_factory=dict)


class _RecordedJobs(BackupJobDependency):
    """The backup-job fake, also putting every call on the timeline (lane ``backup-jobs``)."""

    def __init__(self, timeline: Timeline, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timeline = timeline

    def _record(self, backup_job_id: str, mode: DependencyMode, result: str) -> None:
        super()._record(backup_job_id, mode, result)
        self._timeline.record("backup-jobs", result, detail={"job": backup_job_id, "mode": mode.value})


_ACTIVITY_WHAT = {
    ActivityKind.PUBLISHED: "produced",
    ActivityKind.DELIVERED: "consumed",
    ActivityKind.SETTLED: "commit",
    ActivityKind.REPRODUCED: "retry",
    ActivityKind.DEAD_LETTERED: "dead letter",
}


def _on_activity(timeline: Timeline) -> Callable[[Activity], None]:
    """Activity -> timeline row: published on lane ``publish``, the rest on the
    subscription's lane; paused/resumed become a ``pause`` interval; breaker activities are
    left to the breaker's own listener."""

    def listener(a: Activity) -> None:
        if a.kind is ActivityKind.BREAKER:
            return
        who = a.subscription or "publish"
        detail = {k: v for k, v in (("event", a.event_type), ("attempt", a.attempt),
                                    ("target", a.target_topic), ("detail", a.detail)) if v}
        if a.kind in (ActivityKind.PAUSED, ActivityKind.RESUMED):
            timeline.record(who, "pause", phase="start" if a.kind is ActivityKind.PAUSED else "end",
                            at=a.at, topic=a.topic, partition=a.partition, detail=detail)
            return
        timeline.record(who, _ACTIVITY_WHAT.get(a.kind, a.kind.value), at=a.at, topic=a.topic,
                        partition=a.partition, offset=a.offset, key=a.key, detail=detail)

    return listener


def make_service(driver: Driver, params: StoryParams, timeline: Timeline) -> BackupService:
    """The backup service on the driver's bus, with a recording dependency and a breaker
    on the driver's clock; subscriptions running (joined) when it returns."""
    jobs = _RecordedJobs(timeline, timeout_s=params.dependency_timeout_s, sleep=driver.sleep)
    jobs.add_job("job-on-demand", allows_on_demand=True, storage_provider="s3")
    jobs.add_job("job-scheduled-only", allows_on_demand=False, storage_provider="gcs")
    breaker = CircuitBreaker("backup-jobs", failure_threshold=params.failure_threshold,
                             success_threshold=1, probe_interval_s=params.probe_interval_s,
                             alive_check=jobs.is_alive, clock=driver.clock)
    breaker.add_listener(lambda t: _on_breaker(timeline, t))
    driver.bus.add_listener(_on_activity(timeline))
    return bootstrap(driver.bus, backup_jobs=jobs, breaker=breaker,
                     retry=MainTopicRetry(max_retries=params.max_retries),
                     group_prefix=driver.name("backups"), clock=driver.clock, start=True)


def _on_breaker(timeline: Timeline, t: BreakerTransition) -> None:
    timeline.record("breaker", t.state.value, at=t.at, detail={"reason": t.reason})


def _statuses(service: BackupService) -> dict[str, str]:
    return {k: v.status for k, v in service.repository.snapshot().items()}


class _Phases:
    """Sets the dependency's mode and draws it as an interval on lane ``backup-jobs``."""

    def __init__(self, service: BackupService, timeline: Timeline) -> None:
        self.service, self.timeline = service, timeline
        self.current: str | None = None
        self.calls_at_start = 0
        self.calls: dict[str, int] = {}

    def enter(self, mode: str, slow_s: float = 0.0) -> None:
        self.leave()
        jobs = self.service.backup_jobs
        {"slow": lambda: jobs.slow(slow_s), "down": jobs.down, "bad_data": jobs.bad_data,
         "healthy": jobs.healthy}[mode]()
        self.current, self.calls_at_start = mode, len(jobs.calls)
        self.timeline.record("backup-jobs", mode, phase="start")

    def leave(self) -> None:
        if self.current is not None:
            self.timeline.record("backup-jobs", self.current, phase="end")
            self.calls[self.current] = self.calls.get(self.current, 0) + (
                len(self.service.backup_jobs.calls) - self.calls_at_start)
        self.current = None
        self.service.backup_jobs.healthy()


def run_story(driver: Driver, params: StoryParams) -> StoryResult:
    """Play the four phases (see the module docstring) and return what happened."""
    timeline = Timeline(clock=driver.clock)
    service = make_service(driver, params, timeline)
    phases = _Phases(service, timeline)
    limit = params.timeout_s
    created_dlt = dead_letter_topic(driver.bus.registry.topic_for(BackupRequestCreated))
    accept = service.accept
    unfinished: list[str] = []

    def wait(pred: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        """Wait for one step; a step that times out is noted, not raised: the story goes on
        and its end state is compared as data (:func:`state_differences`)."""
        try:
            driver.wait_until(pred, timeout_s=timeout_s, what=what)
        except driver.timeout_error:
            unfinished.append(what)

    def closed_and(pred: Callable[[], bool]) -> Callable[[], bool]:
        return lambda: pred() and service.breaker.state is BreakerState.CLOSED

    try:
        # 1. healthy
        accept(request_id="a1", backup_job_id="job-on-demand")
        accept(request_id="a2", backup_job_id="job-scheduled-only")
        wait(lambda: _statuses(service) == {"a1": "sent", "a2": "not_allowed"}, timeout_s=limit,
             what="a1 sent, a2 not allowed")
        # 2. slow: times out, retried, the breaker opens; then it recovers
        phases.enter("slow", params.slow_s)
        accept(request_id="s1", backup_job_id="job-on-demand")
        wait(lambda: service.breaker.state is BreakerState.OPEN, timeout_s=limit,
             what="the breaker to open on timeouts")
        phases.leave()
        wait(closed_and(lambda: "s1" in service.interface.sent), timeout_s=limit,
             what="s1 sent and the breaker closed")
        # 3. bad data: fatal, dead-lettered at once; the breaker stays closed
        phases.enter("bad_data")
        accept(request_id="b1", backup_job_id="job-on-demand")
        wait(lambda: len(driver.records(created_dlt)) >= 1, timeout_s=limit,
             what="b1 dead-lettered")
        phases.leave()
        # 4. down: the breaker opens, the rest is held, then everything is sent
        phases.enter("down")
        for i in range(3):
            accept(request_id=f"c{i}", backup_job_id="job-on-demand")
        wait(lambda: service.breaker.state is BreakerState.OPEN, timeout_s=limit,
             what="the breaker to open on connection errors")
        driver.idle(params.probe_interval_s * 1.5)  # open: held, the dependency is not called
        phases.leave()
        wait(closed_and(lambda: {"c0", "c1", "c2"} <= set(service.interface.sent)),
             timeout_s=limit, what="c0..c2 sent and the breaker closed")
        driver.idle(0.5)
        dead = driver.records(created_dlt)
        final = FinalState(
            statuses=tuple(sorted(_statuses(service).items())),
            sent=tuple(sorted(service.interface.sent)),
            dead_letters=tuple(sorted(
                ((r.key or b"").decode(), (parse_provenance(r.headers).exception_fqcn or ""),
                 parse_provenance(r.headers).attempt) for r in dead)),
            breaker_states=tuple(t.state.value for t in service.breaker.transitions),
            breaker_now=service.breaker.state.value,
            pending_events=sum(s.pending_events for s in service.repository.snapshot().values()),
            unfinished_steps=tuple(unfinished),
        )
    finally:
        service.stop()
    activities = list(getattr(driver.bus, "activity", ()))
    return StoryResult(bus=driver.kind, params=params, timeline=timeline, final=final,
                       activities=activities,
                       calls=[(c.backup_job_id, c.mode.value, c.result) for c in service.backup_jobs.calls],
                       phase_calls=dict(phases.calls))


def run_on_memory(params: StoryParams) -> StoryResult:
    """The story on a fresh :class:`InMemoryBus` (simulated time)."""
    from offsetlab.backups import backup_registry

    driver = MemoryDriver(lambda clock: InMemoryBus(backup_registry(), clock=clock,
                                                     default_partitions=params.partitions))
    try:
        return run_story(driver, params)
    finally:
        driver.bus.close()


#: the Kafka bus's consumers: a short session so that Tansu's first join (about half the
#: session timeout there) stays short; Kafka itself joins at once with no rebalance delay
KAFKA_CONSUMER_SETTINGS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000}


def run_on_kafka(broker: Any, params: StoryParams) -> StoryResult:
    """The story on a :class:`~offsetlab.bus.kafka_bus.KafkaBus` against ``broker``, with
    topic names unique to this run (the registry's ``topic_prefix``)."""
    from offsetlab.backups import backup_registry
    from offsetlab.bus.kafka_bus import KafkaBus, KafkaBusConfig

    prefix = f"e08-{uuid.uuid4().hex[:8]}."
    bus = KafkaBus(backup_registry(topic_prefix=prefix),
                   KafkaBusConfig(bootstrap_servers=broker.bootstrap_servers,
                                  default_partitions=params.partitions,
                                  consumer_settings=KAFKA_CONSUMER_SETTINGS))
    try:
        return run_story(KafkaDriver(bus, broker), params)
    finally:
        bus.close()


def summary(result: StoryResult) -> dict[str, Any]:
    """What E08 prints per bus, from the timeline and the story's end state.

    ``calls_while_open``: dependency calls between a breaker ``open`` and the next
    ``half_open`` (the pause at work: should be none); ``retries``: re-produced copies;
    ``dead_letters``; ``calls_per_phase``: calls while the dependency was slow / fed bad
    data / down."""
    frame = result.timeline.to_frame()
    open_since: float | None = None
    calls_while_open = 0
    for who, what, t in zip(frame.who, frame.what, frame.t, strict=True):
        if who == "breaker":
            open_since = float(t) if what == "open" else None
        elif (who == "backup-jobs" and open_since is not None
              and what in ("ok", "TimeoutError", "ConnectionError", "bad_data")):
            calls_while_open += 1
    return {
        "bus": result.bus,
        "retries": int((frame.what == "retry").sum()),
        "dead_letters": int((frame.what == "dead letter").sum()),
        "calls_while_open": calls_while_open,
        "calls_per_phase": dict(sorted(result.phase_calls.items())),
        "breaker_states": list(result.final.breaker_states),
        "duration_s": round(float(frame.t.max()) if len(frame) else 0.0, 2),
    }


def activity_table(result: StoryResult) -> Any:
    """Per subscription: deliveries, settled, retries (re-produced), dead letters, pauses
    (a pandas DataFrame, from the timeline)."""
    frame = result.timeline.to_frame()
    subs = frame[~frame.who.isin(["publish", "backup-jobs", "breaker"])]
    table = subs.assign(n=1).pivot_table(index="who", columns="what", values="n", aggfunc="sum",
                                         fill_value=0)
    wanted = [c for c in ("consumed", "commit", "retry", "dead letter", "pause", "waiting",
                          "skipped") if c in table.columns]
    if "pause" in wanted:  # start and end rows: count pauses once
        table["pause"] = subs[(subs.what == "pause") & (subs.phase == "start")].groupby("who").size()
        table["pause"] = table["pause"].fillna(0).astype(int)
    return table[wanted].rename(columns={"consumed": "delivered", "commit": "settled",
                                         "retry": "re-produced", "pause": "pauses"})


#: lane order of the pictures
LANES = ("publish", "receive", "check-allowed", "send", "backup-jobs", "breaker")


def plot_stories(results: list[StoryResult], *, width: float = 11.0) -> Any:
    """One timeline per bus, stacked (times differ: simulated seconds on the in-memory bus,
    real seconds on Kafka)."""
    from matplotlib.figure import Figure

    from offsetlab.lab.plots import plot_timeline

    fig = Figure(figsize=(width, 3.6 * len(results) + 0.4), layout="constrained")
    axes = fig.subplots(len(results), 1, squeeze=False)[:, 0]
    for ax, r in zip(axes, results, strict=True):
        frame = r.timeline.to_frame()
        lanes = [lane for lane in LANES if lane in set(frame.who)]
        clock = "simulated" if r.bus == "memory" else "real"
        plot_timeline(frame, ax=ax, lanes=lanes, title=f"{r.bus} bus ({clock} seconds)")
    return fig
