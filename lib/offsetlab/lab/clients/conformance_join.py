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
- ``run_returns_after_join``: from the same two members, read from both sides: whether each
  member's ``run_returned`` (KafkaJS: the awaited ``run()`` resolved; Python: the first poll
  that delivered the assignment returned) is at or after the broker's log line that completed
  its join (classic: ``Assignment received ... for generation N`` of its generation; KIP-848:
  the group epoch bump after it joined): :func:`~offsetlab.lab.clients.conformance_join_values.returned_after_broker_join`.
  A client whose call returned before the broker completed the join reads False.
- ``join_after_killed_member_s``: member A joins and is SIGKILLed (no LeaveGroup); B of the
  same group starts ``killed_gap_s`` later; seconds from B's ``run_called`` until it holds
  partitions. The gap is measured too (kill to B's ``run_called``) and the broker's log says
  when it dropped the dead member (``heartbeat_expired``) where it logs it.
- ``static_member_rejoin_s``: the same with ``group.instance.id`` on both incarnations
  (KafkaJS 2.2 has none: ``unsupported``, not run).

Profiles: :class:`JoinParams` defaults are the fast profile (a 15 s session, given to the
KIP-848 group through :mod:`offsetlab.lab.clients.kip848` where the broker's minimum allows);
:meth:`JoinParams.seed` leaves every client at its default session (KafkaJS 30 s, kafka-python
and librdkafka 45 s, KIP-848: the broker's). E01 shows the seed's case with
``run_join_after_killed_member(broker, "kafkajs", "classic", JoinParams.seed(),
timeline=..., log_dir=..., measures=m)``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from offsetlab.brokers import BrokerHandle
from offsetlab.lab import broker_log
from offsetlab.lab.clients.child import ChildMember, Event, MemberTimeout
from offsetlab.lab.clients.conformance_join_values import (
    all_hold_at,
    dead_member_removed_at,
    error_name,
    fatal_error,
    first_hold_value,
    first_join_value,
    killed_gap,
    rejoin_value,
    returned_after_broker_join,
    returned_after_join,
    start_at,
)
from offsetlab.lab.clients.matrix import UNSUPPORTED, Cell
from offsetlab.lab.clients.protocol import MemberConfig
from offsetlab.lab.raw import committed_offsets, create_topic, unique
from offsetlab.lab.timeline_core import Timeline

log = logging.getLogger(__name__)

__all__ = ["JoinParams", "DEFAULT_SESSION_MS", "session_ms", "group_session_ms", "initial_delay_s",
           "member_config", "make_cell", "scenario_names", "warm_coordinator", "KilledRun",
           "killed_run", "run_first_join_and_returns", "run_first_join",
           "run_run_returns_after_join", "run_join_after_killed_member", "run_static_member_rejoin",
           # the values (conformance_join_values), re-exported
           "start_at", "all_hold_at", "first_join_value", "first_hold_value", "returned_after_join",
           "fatal_error", "rejoin_value", "killed_gap", "dead_member_removed_at", "error_name"]

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
    session_timeout_ms: int | None = 15000
    heartbeat_interval_ms: int | None = 1000
    killed_gap_s: float = 2.0
    join_wait_s: float = 60.0      # how long a join may take before the row gives up
    settle_s: float = 0.5          # A holds its partitions this long before it is killed

    @classmethod
    def seed(cls) -> JoinParams:
        """Each client's defaults (KafkaJS: 30 s session, so B waits about 25 s)."""
        return cls(session_timeout_ms=None, heartbeat_interval_ms=None, killed_gap_s=5.0,
                   join_wait_s=120.0)


def group_session_ms(params: JoinParams, broker: BrokerHandle | None) -> int | None:
    """Under KIP-848: the per-group session timeout to give a scenario's group
    (:func:`offsetlab.lab.clients.kip848.set_group_session`), when the scenario asks for one
    and the broker's ``group.consumer.min.session.timeout.ms`` allows it; else None (the
    broker's own ``group.consumer.session.timeout.ms`` counts)."""
    settings = broker.settings if broker is not None else {}
    wanted = params.session_timeout_ms
    low = int(settings.get("group.consumer.min.session.timeout.ms", 45000))
    high = int(settings.get("group.consumer.max.session.timeout.ms", 60000))
    return wanted if wanted is not None and low <= wanted <= high else None


def session_ms(client: str, group_protocol: str, params: JoinParams,
               broker: BrokerHandle | None = None) -> int:
    """The session timeout that decides when the broker drops a dead member: under KIP-848
    the group's (:func:`group_session_ms`) or the broker's, else the configured one or the
    client's default."""
    if group_protocol == "consumer":
        settings = broker.settings if broker is not None else {}
        return group_session_ms(params, broker) or int(settings.get(KIP848_SESSION_KEY, 45000))
    return params.session_timeout_ms or DEFAULT_SESSION_MS[client]



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


def _offsets_partition(group: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of ``group``: Kafka's
    ``Utils.abs(group.hashCode()) % partitions`` (Java's String.hashCode)."""
    h = 0
    for ch in group:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % partitions


def warm_coordinator(broker: BrokerHandle, timeout_s: float = 30.0) -> None:
    """Ask the group coordinator of every ``__consumer_offsets`` partition for a group's
    offsets until each answers (or ``timeout_s``), so that no timed join meets a coordinator
    that is still loading: on a new broker KafkaJS crashed on "The coordinator is loading"
    and its ``run()`` resolved before the join that followed the restart (a CI run of
    notebook 09), and librdkafka's first group joins late."""
    partitions = int((broker.settings or {}).get("offsets.topic.num.partitions", 50))
    groups: dict[int, str] = {}
    while len(groups) < partitions:
        name = unique("warm")
        groups.setdefault(_offsets_partition(name, partitions), name)
    deadline = time.monotonic() + timeout_s
    for name in groups.values():
        while True:
            try:
                committed_offsets(broker, name, "warm")
                break
            except Exception:  # noqa: BLE001 - loading: ask again until the deadline
                if time.monotonic() > deadline:
                    log.warning("group coordinator still not answering after %.0f s", timeout_s)
                    return
                time.sleep(0.2)


def make_cell(behaviour: str, client: str, proto: str, broker: BrokerHandle, value: Any,
          evidence: str) -> Cell:
    return Cell(behaviour=behaviour, client=client, group_protocol=proto,
                broker=broker.kind, value=value, evidence=evidence)


def scenario_names(prefix: str, client: str, proto: str) -> tuple[str, str]:
    tag = f"{prefix}-{client.replace('-', '')}-{proto}"
    return unique(f"{tag}-t"), unique(f"{tag}-g")


def _first_join_members(broker: BrokerHandle, client: str, proto: str, params: JoinParams,
                        timeline: Timeline | None, log_dir: Path | str | None
                        ) -> tuple[list[list[Event]], str, list[broker_log.GroupLogEvent]]:
    """The two members' events, the evidence's ``where`` and the broker's group lines."""
    warm_coordinator(broker)
    topic, group = scenario_names("fj", client, proto)
    create_topic(broker, topic, params.partitions)
    log_start = broker_log.log_size(broker.log_path)
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
    log: list[broker_log.GroupLogEvent] = []
    if broker.log_path is not None and broker.log_path.exists():
        log = broker_log.group_events(broker_log.read_log(broker.log_path, log_start), group)
    return ([list(m.events) for m in members], f"group {group}, {params.partitions} partitions",
            log)


def initial_delay_s(broker: BrokerHandle) -> float:
    """The broker's ``group.initial.rebalance.delay.ms`` in seconds (Kafka's default 3 s)."""
    return int(broker.settings.get("group.initial.rebalance.delay.ms", 3000)) / 1000


def _first_join_cells(broker: BrokerHandle, client: str, proto: str,
                      events: list[list[Event]], where: str,
                      measures: dict[str, Any] | None = None,
                      log: list[broker_log.GroupLogEvent] | None = None) -> list[Cell]:
    v = first_join_value(events)
    checks = [returned_after_broker_join(log or [], e, proto) for e in events]
    if measures is not None:
        measures.update(value=v, first_hold_s=first_hold_value(events),
                        delay_s=initial_delay_s(broker),
                        returned_after_join_s=[c.margin_s for c in checks])
    starts = [start_at(e) for e in events]
    joins = [[x.get("join_s") for x in e if x.get("event") == "join"][:1] for e in events]
    delay = initial_delay_s(broker) * 1000
    if proto == "consumer":
        where += (f"; broker heartbeat interval "
                  f"{broker.settings.get('group.consumer.heartbeat.interval.ms', 5000)} ms")
    ev1 = (f"m1, m2 both hold partitions {v} s after the first run_called (the first member "
           f"{first_hold_value(events)} s) "
           f"(start skew {abs((starts[0] or 0) - (starts[1] or 0)):.2f} s); client join_s {joins}; "
           f"initial rebalance delay {delay:g} ms; {where}")
    if v is None:
        ev1 = f"the two members never held partitions together; {where}"
    each = [c.after for c in checks]
    value2: bool | None = None if None in each else all(each)
    how = ("the awaited consumer.run() resolved" if client == "kafkajs" else
           "the first poll() that delivered the member's first assignment returned")
    done = ("the broker's 'Bumped group epoch' line after the member joined" if proto == "consumer"
            else "the broker's 'Assignment received ... for generation N' line of the member's "
                 "generation")
    ev2 = (f"m1 {checks[0].describe()}, m2 {checks[1].describe()} (call returned: {how}; join "
           f"complete: {done}; both wall clocks of this machine); {where}")
    return [make_cell("first_join_s", client, proto, broker, v, ev1),
            make_cell("run_returns_after_join", client, proto, broker,
                  value2 if value2 is not None else "not measured", ev2)]


def run_first_join_and_returns(broker: BrokerHandle, client: str, group_protocol: str,
                               params: JoinParams, *, timeline: Timeline | None = None,
                               log_dir: Path | str | None = None,
                               measures: dict[str, Any] | None = None) -> list[Cell]:
    """One two-member start, two cells: ``first_join_s`` and ``run_returns_after_join``;
    ``measures`` gets ``value``, ``first_hold_s`` and the broker's ``delay_s``."""
    events, where, log = _first_join_members(broker, client, group_protocol, params, timeline,
                                             log_dir)
    return _first_join_cells(broker, client, group_protocol, events, where, measures, log)


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
    def value(self) -> float | str | None:
        """Seconds to B's partitions; ``fatal CODE`` when B's client failed fatally first."""
        held = rejoin_value(self.b_events)
        fatal = fatal_error(self.b_events)
        return f"fatal {fatal}" if held is None and fatal else held

    @property
    def after_removal(self) -> float | None:
        """Seconds from the broker's removal of the dead member to B's partitions."""
        held = all_hold_at([self.b_events])
        return None if held is None or self.removed_at is None else round(held - self.removed_at, 3)

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
    if proto == "consumer" and group_session_ms(params, broker) is not None:
        from offsetlab.lab.clients import kip848

        low_hb = int(broker.settings.get("group.consumer.min.heartbeat.interval.ms", 5000))
        hb = params.heartbeat_interval_ms
        kip848.set_group_session(broker, group, session,
                                 heartbeat_interval_ms=hb if hb is not None and hb >= low_hb else None)
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
        deadline = time.monotonic() + session / 1000 + params.join_wait_s
        while (time.monotonic() < deadline and b.alive and all_hold_at([b.events]) is None
               and fatal_error(b.events) is None):
            time.sleep(0.1)
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
    tail = (f"kill to B's start {run.gap} s; session {run.session_ms / 1000:g} s; the broker "
            f"dropped the dead member (session expired): {removed}; group {run.group}")
    if isinstance(run.value, str):
        err = next((e for e in run.b_events if e.get("event") == "error"
                    and (e.get("fatal") or e.get("code") == "_FATAL")), {})
        return (f"{what}: B never held partitions; its client failed: "
                f"{str(err.get('error'))[:200]}; {tail}")
    after = "" if run.after_removal is None else f" ({run.after_removal} s after that drop)"
    return f"{what}: B holds partitions {run.value} s after its run_called{after}; {tail}"


def _measure(measures: dict[str, Any] | None, run: KilledRun) -> None:
    if measures is not None:
        measures.update(value=run.value, gap_s=run.gap, session_s=run.session_ms / 1000,
                        after_removal_s=run.after_removal,
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
