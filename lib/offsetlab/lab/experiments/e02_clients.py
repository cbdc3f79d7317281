"""E02 on every client column: the seed's run02, a broker down at start, and a join the
broker refuses after the client connected.

Per column (kafka-python, kafkajs, confluent-kafka classic and, where asked, under KIP-848),
all at once, each member in its own child process (:mod:`offsetlab.lab.clients`):

- ``run02``: a member joins a new group on a one-partition topic holding ``n_messages``
  messages, handles them, commits in the client's idiom (KafkaJS: ``resolveOffset`` and its
  auto-commit; kafka-python ``commit()``; confluent-kafka ``commit(message)``) and, once the
  broker accepted a commit of the end offset, is stopped (``consumer.disconnect()`` /
  ``close()``). Recorded: the sorted kinds of event the member reported, and on KafkaJS what
  ``connect()``, ``subscribe()`` and ``run()`` resolved to.
- ``broker down at start``: a member whose bootstrap is a port where nothing listens, at the
  client's default retry settings (kafka-python: ``bootstrap_timeout_ms`` is the notebook's,
  1.5 s, instead of its default 30 s, to stay within the notebook's time budget), watched for
  ``down_cap_s``: every ``error``/``crash`` it reported, and whether it ended by itself.
- ``session below the broker's minimum``: a member whose session timeout is below the
  broker's ``group.min.session.timeout.ms`` (the broker refuses its JoinGroup with
  INVALID_SESSION_TIMEOUT after the connection succeeded), watched for ``join_fail_cap_s``:
  whether it joined, whether KafkaJS's ``await run()`` resolved (``run_returned``) or rejected
  (an ``error`` at ``where: run``), its crashes and errors. Not run under KIP-848 (the group's
  session is the broker's there).

The values are computed by :mod:`offsetlab.lab.experiments.e02_clients_findings` from the
recorded events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from offsetlab.brokers import BrokerHandle
from offsetlab.brokers.process import free_port
from offsetlab.lab.clients.child import Event
from offsetlab.lab.clients.columns import column_label
from offsetlab.lab.clients.conformance_join import warm_coordinator
from offsetlab.lab.clients.protocol import MemberConfig
from offsetlab.lab.experiments.clients_section import MemberRun, run_concurrently, run_member
from offsetlab.lab.raw import create_topic, produce, unique
from offsetlab.lab.timeline_core import Timeline

__all__ = ["SCENARIOS", "ClientParams", "broker_min_session_ms", "configs", "run_clients"]

RUN02, DOWN, JOIN_FAIL = "run02", "broker down at start", "session below the broker's minimum"
SCENARIOS = (RUN02, DOWN, JOIN_FAIL)


@dataclass(frozen=True, kw_only=True)
class ClientParams:
    """The section's settings (fast profile)."""

    n_messages: int = 3
    down_cap_s: float = 30.0             # how long a member with no broker is watched (KafkaJS's
    #                                      default retries ended 7.5-15 s after ready: jittered backoff)
    kafka_python_bootstrap_timeout_ms: int | None = 1500   # None: kafka-python's 30 s
    join_fail_session_ms: int | None = None  # None: half the broker's minimum
    join_fail_cap_s: float = 12.0        # how long the refused member is watched
    wait_s: float = 60.0                 # run02: generous, on a loaded machine


def broker_min_session_ms(broker: BrokerHandle) -> int:
    """The broker's ``group.min.session.timeout.ms`` (Kafka's default 6000 when the handle
    does not say)."""
    return int((broker.settings or {}).get("group.min.session.timeout.ms", 6000))


def _run02_done(n: int, events: Sequence[Event]) -> bool:
    """The broker accepted a commit of the end offset (``n``) and everything was handled."""
    handled = {e.get("offset") for e in events if e.get("event") == "handled"}
    return len(handled) >= n and any(e.get("event") == "commit" and e.get("offset") == n
                                     for e in events)


def _never(events: Sequence[Event]) -> bool:
    return False


def configs(broker: BrokerHandle, columns: Sequence[tuple[str, str]],
            params: ClientParams) -> dict[tuple[str, str], MemberConfig]:
    """Every (column label, scenario) member's config; makes the run02 topics."""
    out: dict[tuple[str, str], MemberConfig] = {}
    session = params.join_fail_session_ms or broker_min_session_ms(broker) // 2
    for client, proto in columns:
        lab = column_label(client, proto)
        tag = f"{client}-{proto}"
        topic = create_topic(broker, unique(f"e02c-{tag}"), 1)
        produce(broker, topic, [(f"k{i}", str(i)) for i in range(params.n_messages)])
        out[lab, RUN02] = MemberConfig(client=client, who=f"run02 {lab}",
                                       bootstrap=broker.bootstrap_servers,
                                       group=unique(f"e02c-{tag}"), topics=[topic],
                                       group_protocol=proto)
        extra: dict[str, Any] = {}
        if client == "kafka-python" and params.kafka_python_bootstrap_timeout_ms is not None:
            extra["bootstrap_timeout_ms"] = params.kafka_python_bootstrap_timeout_ms
        out[lab, DOWN] = MemberConfig(client=client, who=f"down {lab}",
                                      bootstrap=f"127.0.0.1:{free_port()}",
                                      group=unique(f"e02d-{tag}"), topics=[f"{topic}-down"],
                                      group_protocol=proto, extra=extra)
        if proto == "classic":
            out[lab, JOIN_FAIL] = MemberConfig(
                client=client, who=f"refused {lab}", bootstrap=broker.bootstrap_servers,
                group=unique(f"e02j-{tag}"), topics=[topic], session_timeout_ms=session,
                heartbeat_interval_ms=max(1, session // 5))
    return out


def run_clients(broker: BrokerHandle, columns: Sequence[tuple[str, str]], params: ClientParams,
                timeline: Timeline | None = None, *,
                log_dir: Path | str | None = None) -> dict[tuple[str, str], MemberRun]:
    """Run every scenario on every column at once; the runs by (column label, scenario)."""
    warm_coordinator(broker)  # KafkaJS crashed once joining while the coordinator was loading
    cfgs = configs(broker, columns, params)
    calls = {}
    for (lab, scenario), cfg in cfgs.items():
        if scenario == RUN02:
            until, cap = partial(_run02_done, params.n_messages), params.wait_s
        else:
            until, cap = _never, (params.down_cap_s if scenario == DOWN else params.join_fail_cap_s)
        calls[f"{lab}|{scenario}"] = partial(run_member, cfg, until, cap, timeline=timeline,
                                             log_dir=log_dir)
    runs = run_concurrently(calls)
    return {tuple(k.split("|", 1)): r for k, r in runs.items()}  # type: ignore[misc]
