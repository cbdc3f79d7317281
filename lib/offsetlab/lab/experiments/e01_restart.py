"""E01 A member killed and restarted at once: dynamic against static membership.

The seed's 21 s join is most likely what a new consumer meets when the previous run's consumer
was killed without leaving (the seed did not record it; :mod:`~offsetlab.lab.experiments.e01_clients`
runs the case on KafkaJS at its defaults): the group still counts the dead member, and the broker completes the new
member's join only when it drops the dead one. Static membership (KIP-345,
``group.instance.id``; kafka-python 3.x takes it as ``group_instance_id``, checked in
``kafka/consumer/group.py`` and ``kafka/coordinator/base.py`` of the installed 3.0.12: a
static member sends no LeaveGroup on close, and its JoinGroup carries the instance id) is
the fix Kafka offers: a member that comes back with the same instance id within the session
timeout takes the dead member's place.

:func:`restart_once` runs one repeat for one kind of member in a new group and topic:

1. a member in another process (:data:`MEMBER_SCRIPT`) joins, with or without an instance
   id, and prints the generation its join got from the broker;
2. the broker's view is read (``describe_groups``: member ids, instance ids);
3. the process is SIGKILLed (no LeaveGroup: a crash, a Ctrl-C'd script, a killed pod);
4. at once a new consumer in this process joins the same group with the same settings (and
   the same instance id for a static member); recorded: ``since_kill_s`` (kill to its first
   assignment), ``join_s`` (its subscribe to assignment), the generation its join got;
5. the broker's view again, and the broker's log (``broker.log_path``): the lines
   ``Preparing to rebalance group <group>`` written after the kill.

The settings keep the candidate clocks far apart: the dead member's session timeout
(``session_timeout_ms``, default 10 s) and its rebalance timeout (``rebalance_timeout_ms``,
kafka-python's ``max_poll_interval_ms``, default 30 s), against a static rejoin that needs
only a round trip. :func:`restart_repeats` runs ``repeats`` repeats of both kinds at once (a
group each: the broker's timers are per member, so they do not interfere).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.transports.kafka_python import compat
from offsetlab.lab.raw import create_topic, unique

__all__ = ["KINDS", "MEMBER_SCRIPT", "RestartSettings", "broker_log_text", "broker_view",
           "rebalance_reasons",
           "rebalances_logged",
           "restart_once", "restart_repeats"]

#: the two kinds of member, as the notebook names them
KINDS = ("dynamic", "static")

MEMBER_SCRIPT = """
import sys
from kafka import KafkaConsumer
bootstrap, topic, group, session, heartbeat, max_poll, instance = sys.argv[1:8]
kw = {"group_instance_id": instance} if instance != "-" else {}
c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id="e01-killed",
                  session_timeout_ms=int(session), heartbeat_interval_ms=int(heartbeat),
                  max_poll_interval_ms=int(max_poll), **kw)
c.partitions_for_topic(topic)  # metadata first, as warmed_consumer() does
c.subscribe([topic])
said = None
while True:
    c.poll(timeout_ms=100)
    if c.assignment() and c.group_metadata().generation_id != said:
        said = c.group_metadata().generation_id
        print("assigned", said, flush=True)
"""


@dataclass(frozen=True, kw_only=True)
class RestartSettings:
    """Both incarnations' consumer settings. ``rebalance_timeout_ms`` is kafka-python's
    ``max_poll_interval_ms`` (the rebalance timeout its JoinGroup sends); it must be at least
    twice the session timeout so the two clocks cannot be mistaken for each other."""

    partitions: int = 3
    session_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 1000
    rebalance_timeout_ms: int = 30000
    wait_s: float = 60.0

    def __post_init__(self) -> None:
        for key in ("partitions", "session_timeout_ms", "heartbeat_interval_ms",
                    "rebalance_timeout_ms"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"RestartSettings.{key} must be an int > 0, got {value!r}")
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ConfigError("RestartSettings.heartbeat_interval_ms must be at most a third of "
                              "session_timeout_ms")
        if self.rebalance_timeout_ms < 2 * self.session_timeout_ms:
            raise ConfigError("RestartSettings.rebalance_timeout_ms must be at least twice "
                              "session_timeout_ms (so the findings can tell which one acted)")
        if self.wait_s * 1000 <= self.rebalance_timeout_ms:
            raise ConfigError("RestartSettings.wait_s must outlast rebalance_timeout_ms")

    def consumer(self) -> dict[str, Any]:
        return {"session_timeout_ms": self.session_timeout_ms,
                "heartbeat_interval_ms": self.heartbeat_interval_ms,
                "max_poll_interval_ms": self.rebalance_timeout_ms}


def broker_view(admin: KafkaAdminClient, group: str) -> dict[str, Any]:
    """The group as the broker describes it: state and ``(member id, instance id)`` pairs."""
    info = admin.describe_groups([group]).get(group, {})
    return {"state": str(info.get("group_state")),
            "members": sorted((m["member_id"], m.get("group_instance_id"))
                              for m in info.get("members", ()))}


def rebalances_logged(log_text: str, group: str) -> int:
    """How many times the broker's log says it began a rebalance of ``group``."""
    return log_text.count(f"Preparing to rebalance group {group} ")


def broker_log_text(broker: BrokerHandle) -> str | None:
    """The broker's log so far (None for a broker without one: external, containers)."""
    if broker.log_path is None or not broker.log_path.exists():
        return None
    return broker.log_path.read_text(errors="replace")


def _spawn_member(broker: BrokerHandle, topic: str, group: str, s: RestartSettings,
                  instance: str | None, admin: KafkaAdminClient
                  ) -> tuple[subprocess.Popen[str], list[int]]:
    """The member to be killed, joined and settled: its process and the generations its
    joins got (it prints one line per new generation it holds partitions in). Settled means
    the broker lists the group Stable and no new generation came for a heartbeat interval
    and a half (a first join can be followed by a second round, see ``warmed_consumer``)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", MEMBER_SCRIPT, broker.bootstrap_servers, topic, group,
         str(s.session_timeout_ms), str(s.heartbeat_interval_ms), str(s.rebalance_timeout_ms),
         instance or "-"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    generations: list[tuple[float, int]] = []

    def read() -> None:
        for line in proc.stdout or ():
            if line.startswith("assigned"):
                generations.append((time.monotonic(), int(line.split()[1])))

    threading.Thread(target=read, daemon=True, name=f"e01-read-{group}").start()
    quiet_s = 1.5 * s.heartbeat_interval_ms / 1000
    deadline = Deadline(s.wait_s)
    while not (generations and time.monotonic() - generations[-1][0] >= quiet_s
               and broker_view(admin, group)["state"] == "Stable"):
        if deadline.expired() or proc.poll() is not None:
            proc.kill()
            proc.wait(timeout=30)
            raise TimeoutError(f"E01: the member to be killed did not settle in {group} within "
                               f"{s.wait_s} s (exit code {proc.poll()})")
        time.sleep(0.1)
    return proc, [g for _, g in generations]


def rebalance_reasons(log_text: str, group: str) -> list[str]:
    """The reasons the broker's log gives for each rebalance of ``group`` it began."""
    marker = f"Preparing to rebalance group {group} "
    return [line.split("(reason: ", 1)[1].rstrip(").\n ")[:120] if "(reason: " in line else ""
            for line in log_text.splitlines() if marker in line]


def restart_once(broker: BrokerHandle, kind: str, s: RestartSettings, *, repeat: int = 0,
                 make_name: Callable[[str], str] | None = None) -> dict[str, Any]:
    """One kill and restart of a ``kind`` (``dynamic`` / ``static``) member; see the module."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    name = make_name or unique
    topic = create_topic(broker, name("e01-restart"), s.partitions)
    group = name(f"e01-restart-{kind}")
    instance = f"e01-instance-{repeat}" if kind == "static" else None
    admin = KafkaAdminClient(**broker.clients())
    consumer = None
    try:
        proc, generations = _spawn_member(broker, topic, group, s, instance, admin)
        generation_before = generations[-1]
        view_before = broker_view(admin, group)
        log_before = broker_log_text(broker)
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
        extra = {"group_instance_id": instance} if instance else {}
        # metadata and the coordinator's snapshot warm (compat.warmed_consumer): otherwise the
        # restarted leader can rejoin on its own right after its assignment (seen once in three)
        consumer = compat.warmed_consumer((topic,), snapshot=True)(**broker.clients(
            group_id=group, client_id=f"e01-restarted-{kind}", **s.consumer()), **extra)
        subscribed = time.monotonic()
        consumer.subscribe([topic])
        deadline = Deadline(s.wait_s)
        while not consumer.assignment():
            if deadline.expired():
                raise TimeoutError(f"E01: the restarted {kind} member got no assignment in "
                                   f"{group} within {s.wait_s} s")
            consumer.poll(timeout_ms=50)
        assigned = time.monotonic()
        generation_after = consumer.group_metadata().generation_id
        view_after = broker_view(admin, group)
        log_after = broker_log_text(broker)
    finally:
        if consumer is not None:
            consumer.close()
        admin.close()
    logged, reasons = None, None
    if log_before is not None and log_after is not None:
        logged = rebalances_logged(log_after, group) - rebalances_logged(log_before, group)
        reasons = rebalance_reasons(log_after, group)[rebalances_logged(log_before, group):]
    return {"member": kind, "repeat": repeat, "since_kill_s": round(assigned - killed, 3),
            "join_s": round(assigned - subscribed, 3), "generation_before": generation_before,
            "generation_after": generation_after, "killed_member_generations": generations,
            "rebalances_logged": logged, "rebalance_reasons": reasons,
            "members_before": view_before["members"], "members_after": view_after["members"],
            "state_after": view_after["state"]}


def restart_repeats(broker: BrokerHandle, s: RestartSettings, repeats: int,
                    kinds: tuple[str, ...] = KINDS, *, max_parallel: int = 10
                    ) -> list[dict[str, Any]]:
    """``repeats`` runs of :func:`restart_once` per kind, up to ``max_parallel`` at once;
    rows by kind, then repeat."""
    jobs = [(kind, i) for kind in kinds for i in range(repeats)]
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), max_parallel)),
                            thread_name_prefix="e01-restart") as pool:
        futures = [pool.submit(restart_once, broker, kind, s, repeat=i) for kind, i in jobs]
        return [f.result() for f in futures]
