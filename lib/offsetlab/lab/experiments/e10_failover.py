"""E10: a partition's leader dies while two producers write (``acks=all``, ``acks=1``) and a
consumer group reads with a retry in flight, on the three-node cluster
(:mod:`offsetlab.brokers.kafka_cluster`).

The scenario, every step timed with wall-clock seconds (the brokers' logs use them too):

1. Two one-partition topics (replication factor 3, ``min.insync.replicas=2``) and the group's
   ``__consumer_offsets`` partition are led by one node ``L`` (the topics get the replica
   list ``[L, F1, F2]``, ``L`` being the leader of the group's offsets partition now, so its
   coordinator is on ``L`` too).
2. A bus subscription (:class:`~offsetlab.bus.KafkaBus`, ``MainTopicRetry`` with a backoff)
   consumes the ``acks=all`` topic; its handler fails once on one event: the retry copy is
   re-produced with a not-before time. Two kafka-python producers write one event each every
   ``interval_s``, one with ``acks="all"`` (idempotent: kafka-python's default), one with
   ``acks=1`` (kafka-python then turns idempotence off).
3. Once the copy waits for its due time, the followers ``F1``, ``F2`` are frozen (SIGSTOP);
   the producers stay silent ``quiet_s`` (longer than ``replica.fetch.wait.max.ms``, 500 ms,
   so the followers' pending fetches have been answered empty: nothing written next can
   reach them), then write ``write_s`` to ``L`` alone.
4. ``L`` is SIGKILLed, then ``F1``, ``F2`` resumed: one of them becomes leader without what
   ``L`` wrote while they were frozen. The producers keep writing until both have had
   acknowledgements again for ``after_s``.
5. The topics are read back from the surviving nodes; the group's account and the new
   leaders come from the brokers' logs; the record batches' producer ids from the new
   leader's log segment (``kafka.tools.DumpLogSegments``).

:func:`run_failover` returns a :class:`FailoverRun` with everything recorded; the finders are
in :mod:`.e10_findings`, the plot in :mod:`.e10_plots`.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from offsetlab.brokers.kafka_cluster import ClusterHandle
from offsetlab.bus import Backoff, KafkaBusConfig, MainTopicRetry
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.headers import attempt_of
from offsetlab.bus.interface import Activity, ActivityKind
from offsetlab.bus.kafka_bus import KafkaBus
from offsetlab.lab import broker_log
from offsetlab.lab.experiments.e04_kill_worker import set_pdeathsig
from offsetlab.lab.experiments.e10_logs import (
    coordinator_lines,
    leader_changes,
    producer_log_errors,
)
from offsetlab.lab.experiments.e10_producers import SETTINGS, LogTap, Send, Writer
from offsetlab.lab.experiments.outage_bus import BUS_CONSUMER_SETTINGS, warmed_factory
from offsetlab.lab.experiments.outage_scenario import DependencyDown
from offsetlab.lab.raw import read_topic, unique

__all__ = ["CLUSTER_SETTINGS", "SETTINGS", "FailoverParams", "FailoverRun", "Send", "offsets_partition",
           "run_failover", "run_on_cluster"]

log = logging.getLogger(__name__)

#: the cluster's settings here (over the cluster's defaults): no initial rebalance delay
CLUSTER_SETTINGS: dict[str, Any] = {"group.initial.rebalance.delay.ms": 0}


@dataclass(frozen=True, kw_only=True)
class AcksAll(Event):
    topic: ClassVar[str] = "acks-all"
    seq: int


@dataclass(frozen=True, kw_only=True)
class AcksOne(Event):
    topic: ClassVar[str] = "acks-1"
    seq: int


EVENTS = {"acks=all": AcksAll, "acks=1": AcksOne}


@dataclass(frozen=True, kw_only=True)
class FailoverParams:
    interval_s: float = 0.1   # each producer sends one event this often
    quiet_s: float = 1.0      # followers frozen, producers silent (> replica.fetch.wait.max.ms)
    write_s: float = 2.0      # producers write to the leader alone
    backoff_s: float = 6.5    # the retry copy's delay: due about 3.5 s after the kill, while
    #                           the partition has no leader (the survivors fence the killed node
    #                           after broker.session.timeout.ms, 9 s)
    after_s: float = 2.0      # writing after both producers are acknowledged again
    fail_seq: int = 5         # the acks=all event whose first delivery fails; the followers
    #                           are frozen as soon as its retry copy waits for its due time
    timeout_s: float = 60.0   # the wait for acknowledgements / the retry copy after the kill


@dataclass
class FailoverRun:
    """Everything recorded (epoch seconds)."""

    params: FailoverParams
    topics: dict[str, str]                 # setting -> topic
    group: str
    leader: int                            # L
    followers: list[int]
    offsets_partition: int
    sends: list[Send]
    idempotent: dict[str, bool]            # setting -> the client had a producer id manager
    producer_errors: list[dict[str, Any]]  # kafka-python's own log lines, per setting
    activity: list[Activity]
    events: dict[str, float]               # freeze, write, kill, resume, stop, ...
    read_back: dict[str, list[tuple[int, int]]]  # setting -> (seq, attempt) in offset order
    leaders_before: dict[str, int]         # topic or "__consumer_offsets-N" -> node
    leaders_after: dict[str, int]
    leader_changes: list[dict[str, Any]]   # from the survivors' logs
    group_log: list[broker_log.GroupLogEvent]
    coordinators: list[dict[str, Any]]     # the brokers' GroupCoordinator lines about the group
    deliveries: list[tuple[float, int, int]]  # the group's handler calls: (time, seq, call n)
    batches: dict[str, list[int]] = field(default_factory=dict)  # setting -> producer ids

    @property
    def t0(self) -> float:
        return min(s.sent_at for s in self.sends)

    def sent(self, setting: str) -> list[Send]:
        return [s for s in self.sends if s.setting == setting]

    def lost(self, setting: str) -> list[int]:
        """Acknowledged events not in the topic read back."""
        have = {seq for seq, _ in self.read_back[setting]}
        return sorted(s.seq for s in self.sent(setting) if s.acked_at is not None and s.seq not in have)

    @property
    def retry_delivered_at(self) -> float | None:
        """When the handler got the failing event's retry copy (its second call)."""
        return next((t for t, seq, n in self.deliveries if seq == self.params.fail_seq and n == 2), None)

    @property
    def retry_due(self) -> float | None:
        """The copy's due time, from the bus's WAITING activity (``not before +X s``)."""
        for a in self.activity:
            m = re.search(r"not before \+([\d.]+)s", a.detail) if a.kind is ActivityKind.WAITING else None
            if m:
                return a.at + float(m.group(1))
        return None

    def new_leader_at(self, setting: str) -> float | None:
        """When a survivor logged that it leads the setting's partition (after the kill)."""
        tp = f"{self.topics[setting]}-0"
        return next((c["at"] for c in self.leader_changes if c["partition"] == tp), None)

    def written_twice(self, setting: str) -> list[int]:
        """Events the producer's records hold more than once (retry copies, attempt > 1, are
        the bus's and are not counted)."""
        counts = Counter(seq for seq, attempt in self.read_back[setting] if attempt == 1)
        return sorted(seq for seq, n in counts.items() if n > 1)


def java_hash(text: str) -> int:
    """Java's ``String.hashCode``."""
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition(group: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of ``group`` (Kafka: ``Utils.abs(hashCode) % n``,
    ``Utils.abs`` being ``Math.abs`` with ``MIN_VALUE`` -> 0; its leader is the group's
    coordinator: the broker's ``[GroupCoordinator id=N topic=__consumer_offsets partition=P]``
    lines confirm it, :func:`.e10_logs.coordinator_lines`)."""
    h = java_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def _create_topics(cluster: ClusterHandle, names: list[str], replicas: list[int]) -> dict[str, int]:
    """Create one-partition ``names`` on ``replicas`` (the first leads); wait until one answer
    lists them all led by ``replicas[0]`` and fully replicated (the nodes' metadata catch up
    one at a time); returns topic -> leader from that answer."""
    admin = KafkaAdminClient(**cluster.clients(request_timeout_ms=30000))
    try:
        admin.create_topics([NewTopic(n, replica_assignments={0: replicas}) for n in names],
                            timeout_ms=30000)
    finally:
        admin.close()
    deadline = Deadline(30)
    while True:
        try:
            described = {t["name"]: t["partitions"][0] for t in cluster.cluster.describe_topics(names)
                         if t.get("partitions")}
        except Exception:  # noqa: BLE001 - asked again
            described = {}
        if set(described) == set(names) and all(
                p["leader_id"] == replicas[0] and len(p["isr_nodes"]) == len(replicas)
                for p in described.values()):
            return {n: int(described[n]["leader_id"]) for n in names}
        if deadline.expired():
            raise TimeoutError(f"topics {names} not led by node {replicas[0]} and fully replicated "
                               f"in 30 s: {described}")
        time.sleep(0.2)


def _wait(predicate: Any, timeout_s: float, what: str) -> float | None:
    deadline = Deadline(timeout_s)
    while not predicate():
        if deadline.expired():
            log.warning("E10: %s did not happen within %.0f s", what, timeout_s)
            return None
        time.sleep(0.02)
    return time.time()


def _producer_ids(cluster: ClusterHandle, node: int, topic: str) -> list[int]:
    """The producer id of every record batch of ``topic``-0 in ``node``'s log segments
    (``kafka.tools.DumpLogSegments``; -1: a batch written without one)."""
    n = cluster.cluster.node(node)
    files = sorted((n.data_dir / f"{topic}-0").glob("*.log"))
    if not files:
        return []
    out = subprocess.run(
        [cluster.cluster.java, "-Xmx128m", "-cp", str(cluster.cluster.libs / "*"),
         "kafka.tools.DumpLogSegments", "--files", ",".join(map(str, files))],
        capture_output=True, text=True, timeout=60, check=False,
        preexec_fn=set_pdeathsig)  # the JVM dies with this process
    return [int(m.group(1)) for m in re.finditer(r"producerId: (-?\d+)", out.stdout)]


def run_failover(cluster: ClusterHandle, params: FailoverParams | None = None) -> FailoverRun:
    """The scenario of the module docstring on ``cluster`` (3 nodes, freshly started)."""
    p = params or FailoverParams()
    group = unique("e10-group")
    registry = EventRegistry([AcksAll, AcksOne], topic_prefix=unique("e10") + ".")
    topics = {s: registry.topic_for(cls) for s, cls in EVENTS.items()}
    n_offsets = int(cluster.settings.get("offsets.topic.num.partitions", 50))
    part = offsets_partition(group, n_offsets)
    offsets_tp = ("__consumer_offsets", part)
    # the offsets topic exists once a group or an admin asked for a coordinator: ask now
    deadline = Deadline(60)
    while True:
        try:
            leader = cluster.leaders(["__consumer_offsets"]).get(offsets_tp, -1)
        except Exception:  # noqa: BLE001 - not created yet
            leader = -1
        if leader > 0 or deadline.expired():
            break
        _find_coordinator(cluster, group)
        time.sleep(0.3)
    if leader <= 0:
        raise TimeoutError("__consumer_offsets has no leader for the group's partition")
    followers = [n for n in cluster.node_ids if n != leader]
    led = _create_topics(cluster, list(topics.values()), [leader, *followers])
    before = {**{s: led[t] for s, t in topics.items()}, f"__consumer_offsets-{part}": leader}

    activity: list[Activity] = []
    lock = threading.Lock()
    calls: Counter[int] = Counter()
    deliveries: list[tuple[float, int, int]] = []

    def handler(event: Event) -> None:
        assert isinstance(event, AcksAll)
        with lock:
            calls[event.seq] += 1
            n = calls[event.seq]
            deliveries.append((time.time(), event.seq, n))
        if event.seq == p.fail_seq and n == 1:
            raise DependencyDown(f"event {event.seq} fails its first delivery")

    def on_activity(a: Activity) -> None:
        with lock:
            activity.append(a)

    def seen(kind: ActivityKind, attempt: int | None = None) -> bool:
        with lock:
            return any(a.kind is kind and (attempt is None or a.attempt == attempt) for a in activity)

    tap = LogTap()
    plog = logging.getLogger("kafka.producer")
    plog.addHandler(tap)
    config = KafkaBusConfig(bootstrap_servers=cluster.bootstrap_servers, name=group,
                            client_settings=dict(cluster.client_config), keep_activity=True,
                            consumer_settings=BUS_CONSUMER_SETTINGS, consumer_factory=warmed_factory())
    retry = MainTopicRetry(max_retries=3, backoff=Backoff(initial_s=p.backoff_s, max_s=p.backoff_s))
    events: dict[str, float] = {}
    writers: list[Writer] = []
    try:
        with KafkaBus(registry, config) as bus:
            bus.add_listener(on_activity)
            sub = bus.subscribe(AcksAll, handler, group=group, retry=retry)
            sub.run(timeout=60)
            events["joined"] = time.time()
            writers = [Writer(cluster, s, registry, EVENTS[s], p.interval_s) for s in SETTINGS]
            for w in writers:
                w.start()
            _wait(lambda: seen(ActivityKind.WAITING), p.timeout_s, "the retry copy's wait")
            for w in writers:
                w.hold.set()
            for f in followers:
                cluster.pause_node(f)
            events["freeze"] = time.time()
            time.sleep(p.quiet_s)
            events["write"] = time.time()
            for w in writers:
                w.hold.clear()
            time.sleep(p.write_s)
            events["kill"] = time.time()  # kill_node sends SIGKILL first, then reaps
            cluster.kill_node(leader)
            for f in followers:
                cluster.resume_node(f)
            events["resume"] = time.time()
            kill = events["kill"]
            _wait(lambda: all(w.acked_since(kill) for w in writers), p.timeout_s,
                  "an acknowledgement on both producers after the kill")
            time.sleep(p.after_s)
            for w in writers:
                w.hold.set()
            events["stop"] = time.time()
            for w in writers:
                w.close(p.timeout_s)
            events["flushed"] = time.time()
            _wait(lambda: seen(ActivityKind.SETTLED, attempt=2) or seen(ActivityKind.DEAD_LETTERED),
                  p.timeout_s, "the retry copy's settlement")
            acked = {s.seq for s in writers[0].sends if s.acked_at is not None}
            _wait(lambda: acked <= set(calls), 30, "the group's delivery of every acknowledged event")
            events["end"] = time.time()
    finally:
        plog.removeHandler(tap)
        for w in writers:
            if w.is_alive():
                w.close(5)
        for f in followers:
            if cluster.cluster.node(f).paused:
                cluster.resume_node(f)
    read_back = {}
    for s, t in topics.items():
        read_back[s] = [(registry.decode(r.value).seq, attempt_of(r.headers or []))  # type: ignore[attr-defined]
                        for r in read_topic(cluster, t, timeout_s=30)]
    after_leaders = cluster.leaders([*topics.values(), "__consumer_offsets"])
    after = {**{s: after_leaders[(t, 0)] for s, t in topics.items()},
             f"__consumer_offsets-{part}": after_leaders[offsets_tp]}
    lines = {n: broker_log.read_log(path) for n, path in cluster.log_paths.items()}
    changes = leader_changes(lines, [*(f"{t}-0" for t in topics.values()), f"__consumer_offsets-{part}"],
                             since=events["kill"])
    coordinators = coordinator_lines(lines, group)
    group_log = [e for n in sorted(lines) for e in broker_log.group_events(lines[n], group)]
    new_leader = after["acks=all"]
    batches = {s: _producer_ids(cluster, new_leader, t) for s, t in topics.items()} if new_leader > 0 else {}
    return FailoverRun(
        params=p, topics=topics, group=group, leader=leader, followers=followers,
        offsets_partition=part, sends=[s for w in writers for s in w.sends],
        idempotent={w.setting: w.idempotent for w in writers},
        producer_errors=producer_log_errors(tap.lines, {w.client_id: w.setting for w in writers}),
        activity=list(activity), events=events, read_back=read_back, leaders_before=before,
        leaders_after=after, leader_changes=changes, group_log=group_log, coordinators=coordinators, deliveries=list(deliveries),
        batches=batches)


def run_on_cluster(lab: Any, params: FailoverParams) -> tuple[FailoverRun | None, str]:
    """Start the notebook's three-node cluster (:data:`CLUSTER_SETTINGS`), run
    :func:`run_failover` on it and stop it (every node, on every exit path). Returns the run
    and ``""``, or None and why the notebook's broker kind cannot run it (not ``kafka``, or not
    ours to start: the notebook prints that and makes no findings). Measures the cluster's
    start (``cluster_ready_s``) and the run (``scenario_s``) with ``lab.measure``."""
    from offsetlab.brokers import start_broker

    ok, why = lab.can_dedicate(settings=True, restart=True)
    if ok and lab.broker_kind != "kafka":
        ok, why = False, f"a {lab.broker_kind!r} broker has no three-node cluster here"
    if not ok:
        return None, why
    t0 = time.monotonic()
    with start_broker("kafka", nodes=3, settings=CLUSTER_SETTINGS) as cluster:
        assert isinstance(cluster, ClusterHandle)
        lab.measure("cluster_ready_s", round(time.monotonic() - t0, 2))
        t1 = time.monotonic()
        run = run_failover(cluster, params)
        lab.measure("scenario_s", round(time.monotonic() - t1, 2))
    return run, ""


def _find_coordinator(cluster: ClusterHandle, group: str) -> None:
    """Ask for ``group``'s coordinator once (a FindCoordinator request, which creates
    ``__consumer_offsets`` when it is missing)."""
    admin = KafkaAdminClient(**cluster.clients(request_timeout_ms=5000))
    try:
        admin.describe_groups([group])
    except Exception:  # noqa: BLE001 - asked again by the caller
        pass
    finally:
        admin.close()
