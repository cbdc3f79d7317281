"""The conformance matrix's join rows: ``first_join_s``, ``run_returns_after_join``,
``join_after_killed_member_s`` and ``static_member_rejoin_s``, for every client column.

Each row has a pure function that computes its value from the members' recorded events
(:attr:`ChildMember.events <offsetlab.lab.clients.child.ChildMember.events>`: ``at`` is the
child's wall clock) and a driver ``run_<row>(broker, client, group_protocol, params, *,
timeline, log_dir)`` that makes its own topic and group, starts the members (and stops them
on every exit path, in the thread that started them) and returns a
:class:`~offsetlab.lab.clients.matrix.Cell` with its evidence.

- ``first_join_s``: two members of a new group start together; seconds from the earlier
  member's ``run_called`` until both hold partitions at the same time (replayed from their
  ``assigned``/``revoked``/``lost`` events). The broker should keep Kafka's default
  ``group.initial.rebalance.delay.ms`` (3000) for this row; the driver asks for the group
  coordinator first, because librdkafka's first group on a new cluster joins late (see
  :mod:`offsetlab.bus.transports.confluent.compat`).
- ``run_returns_after_join``: from the same two members: whether each member's
  ``run_returned`` event came after its ``join`` event (arrival order on one pipe).
- ``join_after_killed_member_s``: member A joins and is SIGKILLed (no LeaveGroup); B of the
  same group starts ``killed_gap_s`` later; seconds from B's ``run_called`` until it holds
  partitions. The gap is measured too (kill to B's ``run_called``) and the broker's log says
  when it dropped the dead member (``heartbeat_expired``) where it logs it.
- ``static_member_rejoin_s``: the same with ``group.instance.id`` on both incarnations
  (KafkaJS 2.2 has none: ``unsupported``, not run).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from offsetlab.brokers import BrokerHandle
from offsetlab.lab import broker_log
from offsetlab.lab.clients.child import ChildMember, Event, MemberTimeout
from offsetlab.lab.clients.matrix import UNSUPPORTED, Cell
from offsetlab.lab.clients.protocol import MemberConfig
from offsetlab.lab.raw import committed_offsets, create_topic, unique
from offsetlab.lab.timeline_core import Timeline

__all__ = ["JoinParams", "DEFAULT_SESSION_MS", "session_ms", "start_at", "all_hold_at",
           "first_join_value", "returned_after_join", "rejoin_value", "killed_gap",
           "dead_member_removed_at", "member_config", "make_cell", "scenario_names", "warm_coordinator",
           "KilledRun", "killed_run", "run_first_join_and_returns", "run_first_join", "run_run_returns_after_join",
           "run_join_after_killed_member", "run_static_member_rejoin", "error_name"]

#: each client's default session timeout (ms) for the classic protocol: kafka-python 3.0.12's
#: ``KafkaConsumer.DEFAULT_CONFIG`` (45000), KafkaJS 2.2's ``sessionTimeout`` (30000) and
#: librdkafka's ``session.timeout.ms`` (45000); under KIP-848 the broker's
#: ``group.consumer.session.timeout.ms`` (45000 by default) counts instead (:func:`session_ms`)
DEFAULT_SESSION_MS = {"kafka-python": 45000, "kafkajs": 30000, "confluent-kafka": 45000}
KIP848_SESSION_KEY = "group.consumer.session.timeout.ms"


@dataclass(frozen=True, kw_only=True)
class JoinParams:
    """The join rows' settings; the defaults are the fast profile.

    ``session_timeout_ms`` None means each client's default (the seed profile); the killed
    member's session minus ``killed_gap_s`` should be at least twice a normal join (a few
    seconds here) so that waiting out the session and an ordinary join cannot be confused.
    """

    partitions: int = 2
    session_timeout_ms: int | None = 10000
    heartbeat_interval_ms: int | None = 1000
    killed_gap_s: float = 2.0
    join_wait_s: float = 60.0      # how long a join may take before the row gives up
    settle_s: float = 0.5          # A holds its partitions this long before it is killed

    @classmethod
    def seed(cls) -> JoinParams:
        """Each client's defaults (KafkaJS: 30 s session, so B waits about 25 s)."""
        return cls(session_timeout_ms=None, heartbeat_interval_ms=None, killed_gap_s=5.0,
                   join_wait_s=120.0)


def session_ms(client: str, group_protocol: str, params: JoinParams,
               broker: BrokerHandle | None = None) -> int:
    """The session timeout that decides when the broker drops a dead member: the broker's
    under KIP-848, else the configured one or the client's default."""
    if group_protocol == "consumer":
        settings = broker.settings if broker is not None else {}
        return int(settings.get(KIP848_SESSION_KEY, 45000))
    return params.session_timeout_ms or DEFAULT_SESSION_MS[client]


# -- values from recorded events --------------------------------------------------------------
def _first(events: Sequence[Event], kind: str) -> Event | None:
    return next((e for e in events if e.get("event") == kind), None)


def start_at(events: Sequence[Event]) -> float | None:
    """When the member started consuming: its ``run_called`` (else ``ready``) wall time."""
    ev = _first(events, "run_called") or _first(events, "ready")
    return float(ev["at"]) if ev else None


def _parts(e: Event) -> set[tuple[str, int]]:
    return {(str(t), int(p)) for t, p in e.get("partitions") or []}


def all_hold_at(members: Sequence[Sequence[Event]]) -> float | None:
    """The first wall time at which every member holds at least one partition (replaying
    their ``assigned``/``revoked``/``lost`` events in time order); None when never."""
    merged = sorted(((float(e["at"]), i, e) for i, evs in enumerate(members) for e in evs
                     if e.get("event") in ("assigned", "revoked", "lost")),
                    key=lambda x: (x[0], x[1]))
    held: list[set[tuple[str, int]]] = [set() for _ in members]
    for at, i, e in merged:
        if e["event"] == "assigned":
            held[i] |= _parts(e)
        else:
            held[i] -= _parts(e)
        if members and all(held):
            return at
    return None


def first_join_value(members: Sequence[Sequence[Event]]) -> float | None:
    """Seconds from the earliest member's start until all hold partitions (None: never)."""
    starts = [start_at(evs) for evs in members]
    held = all_hold_at(members)
    if held is None or any(s is None for s in starts):
        return None
    return round(held - min(s for s in starts if s is not None), 3)


def returned_after_join(events: Sequence[Event]) -> bool | None:
    """Whether the member's first ``run_returned`` came after its first ``join`` (False
    when it returned before any join; None when it never returned)."""
    kinds = [e.get("event") for e in events]
    if "run_returned" not in kinds:
        return None
    returned = kinds.index("run_returned")
    return "join" in kinds and kinds.index("join") < returned


def rejoin_value(events: Sequence[Event]) -> float | None:
    """Seconds from the member's start until it first holds partitions."""
    start, held = start_at(events), all_hold_at([events])
    return None if start is None or held is None else round(held - start, 3)


def killed_gap(kill_at: float, events: Sequence[Event]) -> float | None:
    """Seconds from the kill (wall time) to the new member's start."""
    start = start_at(events)
    return None if start is None else round(start - kill_at, 3)


def dead_member_removed_at(lines: Sequence[str], group: str) -> float | None:
    """When the broker's log says it dropped a member of ``group`` whose session expired."""
    hits = [e.at for e in broker_log.group_events(lines, group)
            if e.kind == "heartbeat_expired" and e.at is not None]
    return min(hits) if hits else None


def error_name(text: str | None) -> str:
    """``"ClassName: message"`` -> ``"ClassName"``."""
    return (text or "").split(":", 1)[0].strip() or "unknown"


# -- drivers ------------------------------------------------------------------------------------
def member_config(client: str, group_protocol: str, who: str, broker: BrokerHandle, group: str,
                  topic: str, *, session_timeout_ms: int | None = None,
                  heartbeat_interval_ms: int | None = None, **kw: Any) -> MemberConfig:
    """A member's config; under KIP-848 the session and heartbeat are the broker's (not set)."""
    if group_protocol == "consumer":
        session_timeout_ms = heartbeat_interval_ms = None
    return MemberConfig(client=client, who=who, bootstrap=broker.bootstrap_servers, group=group,
                        topics=[topic], group_protocol=group_protocol,
                        session_timeout_ms=session_timeout_ms,
                        heartbeat_interval_ms=heartbeat_interval_ms, **kw)


def warm_coordinator(broker: BrokerHandle) -> None:
    """Ask for a group coordinator once (``__consumer_offsets`` exists afterwards), so a
    first join timed next is not librdkafka's first group on a new cluster."""
    try:
        committed_offsets(broker, unique("warm"), "warm")
    except Exception:  # noqa: BLE001 - a warm-up only
        pass


def make_cell(behaviour: str, client: str, proto: str, broker: BrokerHandle, value: Any,
          evidence: str) -> Cell:
    return Cell(behaviour=behaviour, client=client, group_protocol=proto,
                broker=broker.kind, value=value, evidence=evidence)


def scenario_names(prefix: str, client: str, proto: str) -> tuple[str, str]:
    tag = f"{prefix}-{client.replace('-', '')}-{proto}"
    return unique(f"{tag}-t"), unique(f"{tag}-g")


def _first_join_members(broker: BrokerHandle, client: str, proto: str, params: JoinParams,
                        timeline: Timeline | None, log_dir: Path | str | None
                        ) -> tuple[list[list[Event]], str]:
    warm_coordinator(broker)
    topic, group = scenario_names("fj", client, proto)
    create_topic(broker, topic, params.partitions)
    tag = f"{client}-{proto}-fj"
    members = [ChildMember(member_config(client, proto, f"{tag}-m{i}", broker, group, topic,
                                         session_timeout_ms=params.session_timeout_ms,
                                         heartbeat_interval_ms=params.heartbeat_interval_ms),
                           timeline, log_dir=log_dir) for i in (1, 2)]
    try:
        for m in members:
            m.start()
        deadline = time.monotonic() + params.join_wait_s
        while time.monotonic() < deadline and all_hold_at([m.events for m in members]) is None:
            if not all(m.alive for m in members):
                break
            time.sleep(0.1)
        for m in members:  # run_returned may come just after the assignment
            try:
                m.wait_for("run_returned", timeout_s=max(1.0, deadline - time.monotonic()))
            except MemberTimeout:
                pass
    finally:
        for m in members:
            m.close()
    return [list(m.events) for m in members], f"group {group}, {params.partitions} partitions"


def _first_join_cells(broker: BrokerHandle, client: str, proto: str,
                      events: list[list[Event]], where: str) -> list[Cell]:
    v = first_join_value(events)
    starts = [start_at(e) for e in events]
    joins = [[x.get("join_s") for x in e if x.get("event") == "join"][:1] for e in events]
    delay = broker.settings.get("group.initial.rebalance.delay.ms", "default (3000)")
    ev1 = (f"m1, m2 both hold partitions {v} s after the first run_called "
           f"(start skew {abs((starts[0] or 0) - (starts[1] or 0)):.2f} s); client join_s {joins}; "
           f"initial rebalance delay {delay} ms; {where}")
    if v is None:
        ev1 = f"the two members never held partitions together; {where}"
    each = [returned_after_join(e) for e in events]
    value2: bool | None = None if None in each else all(each)
    ev2 = (f"run_returned after join: m1 {each[0]}, m2 {each[1]} (event order of each member); "
           f"{where}")
    return [make_cell("first_join_s", client, proto, broker, v, ev1),
            make_cell("run_returns_after_join", client, proto, broker,
                  value2 if value2 is not None else "no run_returned", ev2)]


def run_first_join_and_returns(broker: BrokerHandle, client: str, group_protocol: str,
                               params: JoinParams, *, timeline: Timeline | None = None,
                               log_dir: Path | str | None = None) -> list[Cell]:
    """One two-member start, two cells: ``first_join_s`` and ``run_returns_after_join``."""
    events, where = _first_join_members(broker, client, group_protocol, params, timeline, log_dir)
    return _first_join_cells(broker, client, group_protocol, events, where)


def run_first_join(broker: BrokerHandle, client: str, group_protocol: str, params: JoinParams, *,
                   timeline: Timeline | None = None, log_dir: Path | str | None = None) -> Cell:
    return run_first_join_and_returns(broker, client, group_protocol, params,
                                      timeline=timeline, log_dir=log_dir)[0]


def run_run_returns_after_join(broker: BrokerHandle, client: str, group_protocol: str,
                               params: JoinParams, *, timeline: Timeline | None = None,
                               log_dir: Path | str | None = None) -> Cell:
    return run_first_join_and_returns(broker, client, group_protocol, params,
                                      timeline=timeline, log_dir=log_dir)[1]


@dataclass(frozen=True)
class KilledRun:
    """What a kill-and-restart run recorded (the values are computed from it)."""

    b_events: list[Event]
    kill_at: float
    removed_at: float | None     # broker log: the dead member dropped (session expired)
    session_ms: int
    group: str

    @property
    def value(self) -> float | None:
        return rejoin_value(self.b_events)

    @property
    def gap(self) -> float | None:
        return killed_gap(self.kill_at, self.b_events)


def killed_run(broker: BrokerHandle, client: str, proto: str, params: JoinParams, *,
               static: bool, timeline: Timeline | None, log_dir: Path | str | None) -> KilledRun:
    """A joins and is SIGKILLed; B (same group, same instance id when ``static``) starts
    ``killed_gap_s`` later and is waited for until it holds partitions."""
    topic, group = scenario_names("st" if static else "kl", client, proto)
    create_topic(broker, topic, params.partitions)
    session = session_ms(client, proto, params, broker)
    kw: dict[str, Any] = {"session_timeout_ms": params.session_timeout_ms,
                          "heartbeat_interval_ms": params.heartbeat_interval_ms}
    if static:
        kw["group_instance_id"] = f"{group}-instance"
    tag = f"{client}-{proto}-{'static' if static else 'killed'}"
    log_start = broker_log.log_size(broker.log_path)
    a = ChildMember(member_config(client, proto, f"{tag}-a", broker, group, topic, **kw), timeline,
                    log_dir=log_dir)
    b = ChildMember(member_config(client, proto, f"{tag}-b", broker, group, topic, **kw), timeline,
                    log_dir=log_dir)
    try:
        a.start()
        a.wait_for("assigned", lambda e: bool(e.get("partitions")), timeout_s=params.join_wait_s)
        time.sleep(params.settle_s)
        kill_at = time.time()
        a.kill()
        time.sleep(params.killed_gap_s)
        b.start()
        b.wait_for("assigned", lambda e: bool(e.get("partitions")),
                   timeout_s=session / 1000 + params.join_wait_s)
    finally:
        a.close()
        b.close()
    removed = None
    if broker.log_path is not None and broker.log_path.exists():
        removed = dead_member_removed_at(broker_log.read_log(broker.log_path, log_start), group)
    return KilledRun(list(b.events), kill_at, removed, session, group)


def killed_evidence(run: KilledRun, *, static: bool) -> str:
    removed = ("not in the broker log" if run.removed_at is None
               else f"{run.removed_at - run.kill_at:.2f} s after the kill")
    what = "static (same group.instance.id)" if static else "dynamic"
    return (f"{what}: B holds partitions {run.value} s after its run_called; kill to B's start "
            f"{run.gap} s; session {run.session_ms / 1000:g} s; broker dropped the dead member "
            f"(heartbeat expired): {removed}; group {run.group}")


def _measure(measures: dict[str, Any] | None, run: KilledRun) -> None:
    if measures is not None:
        measures.update(value=run.value, gap_s=run.gap, session_s=run.session_ms / 1000,
                        removed_after_kill_s=None if run.removed_at is None
                        else round(run.removed_at - run.kill_at, 3))


def run_join_after_killed_member(broker: BrokerHandle, client: str, group_protocol: str,
                                 params: JoinParams, *, timeline: Timeline | None = None,
                                 log_dir: Path | str | None = None,
                                 measures: dict[str, Any] | None = None) -> Cell:
    """``measures`` (when given) gets the numbers the finders compare: ``value``,
    ``gap_s``, ``session_s``, ``removed_after_kill_s``."""
    run = killed_run(broker, client, group_protocol, params, static=False, timeline=timeline,
                     log_dir=log_dir)
    _measure(measures, run)
    return make_cell("join_after_killed_member_s", client, group_protocol, broker, run.value,
                 killed_evidence(run, static=False))


def run_static_member_rejoin(broker: BrokerHandle, client: str, group_protocol: str,
                             params: JoinParams, *, timeline: Timeline | None = None,
                             log_dir: Path | str | None = None,
                             measures: dict[str, Any] | None = None) -> Cell:
    if client == "kafkajs":
        return make_cell("static_member_rejoin_s", client, group_protocol, broker, UNSUPPORTED,
                     "KafkaJS 2.2 has no group.instance.id (no static membership): not run")
    run = killed_run(broker, client, group_protocol, params, static=True, timeline=timeline,
                     log_dir=log_dir)
    _measure(measures, run)
    return make_cell("static_member_rejoin_s", client, group_protocol, broker, run.value,
                 killed_evidence(run, static=True))


def with_session(params: JoinParams, session_timeout_ms: int | None) -> JoinParams:
    return replace(params, session_timeout_ms=session_timeout_ms)
