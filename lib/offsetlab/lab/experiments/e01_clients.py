"""E01 on every client: the seed's run01 and the wait after a killed member, on KafkaJS,
confluent-kafka (classic and KIP-848) and kafka-python side by side.

The rows are the conformance matrix's join rows (:mod:`offsetlab.lab.clients.conformance_join`,
run concurrently by :func:`~offsetlab.lab.clients.conformance_join_family.run_family`), on one
dedicated broker (:meth:`ClientsSettings.broker_settings`) that keeps Kafka's default
``group.initial.rebalance.delay.ms`` (3000, as the seed's broker presumably had) and lowers the
consumer group protocol's session so the KIP-848 column can have a short one:

- run01: two members of a new group start together (``first_join_s``, the first member's
  ``first_hold_s``, ``run_returns_after_join``, and each member's own join duration where the
  client reports one: KafkaJS's GROUP_JOIN ``duration``, kafka-python's last JoinGroup round
  trip; librdkafka gives none);
- ``join_after_killed_member_s``: a member is SIGKILLed, a new member of the same group starts
  ``killed_gap_s`` later; seconds until it holds partitions, with the broker's log line that
  dropped the dead member;
- ``static_member_rejoin_s``: the same with ``group.instance.id`` (KafkaJS: unsupported).

Fast profile: a short session on every client; seed profile (``session_timeout_ms`` None):
each client's default session (KafkaJS 30 s, kafka-python 3.x and librdkafka 45 s, KIP-848 the
broker's ``group.consumer.session.timeout.ms``) with the seed's gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.clients import kip848
from offsetlab.lab.clients.columns import column_label
from offsetlab.lab.clients.conformance_join import JoinParams
from offsetlab.lab.clients.conformance_join_family import FamilyParams, FamilyResult, run_family
from offsetlab.lab.timeline_core import Timeline

__all__ = ["ClientsSettings", "ClientsRun", "ROWS", "run_clients", "member_joins", "PLOT_EVENTS"]

ROWS = ("first_join_s", "run_returns_after_join", "join_after_killed_member_s",
        "static_member_rejoin_s")
#: the events the section's timeline plot shows
PLOT_EVENTS = ("run_called", "join", "assigned", "revoked", "lost", "killed", "error", "crash",
               "run_returned")


@dataclass(frozen=True, kw_only=True)
class ClientsSettings:
    """The section's parameters; ``session_timeout_ms`` None = each client's default."""

    session_timeout_ms: int | None = 20000
    heartbeat_interval_ms: int | None = 1000
    killed_gap_s: float = 2.0
    #: the dedicated broker's consumer-protocol (KIP-848) session and heartbeat: what a KIP-848
    #: group without a per-group session gets (Kafka's defaults: 45000 / 5000)
    kip848_session_timeout_ms: int = 10000
    kip848_heartbeat_interval_ms: int = 1000
    partitions: int = 2

    def join_params(self) -> JoinParams:
        return JoinParams(partitions=self.partitions, session_timeout_ms=self.session_timeout_ms,
                          heartbeat_interval_ms=self.heartbeat_interval_ms,
                          killed_gap_s=self.killed_gap_s, join_wait_s=60.0)

    def broker_settings(self) -> dict[str, Any]:
        """Kafka's default initial rebalance delay (not set: 3000 ms); the consumer protocol's
        session and heartbeat as given, and both protocols' minimum session lowered."""
        return kip848.broker_settings(session_timeout_ms=self.kip848_session_timeout_ms,
                                      heartbeat_interval_ms=self.kip848_heartbeat_interval_ms)


@dataclass
class ClientsRun:
    result: FamilyResult
    timeline: Timeline
    columns: list[tuple[str, str]]

    def value(self, behaviour: str, client: str, proto: str = "classic") -> Any:
        return self.result.cell(behaviour, client, proto).value

    def measures(self, behaviour: str, client: str, proto: str = "classic") -> dict[str, Any]:
        return self.result.measures.get((behaviour, client, proto), {})

    def table(self) -> pd.DataFrame:
        """Rows behaviours, columns clients: the cells' values."""
        return pd.DataFrame({column_label(c, p): {b: self.value(b, c, p) for b in ROWS}
                             for c, p in self.columns})

    def evidence(self) -> pd.DataFrame:
        return pd.DataFrame([{"behaviour": c.behaviour, "column": column_label(c.client, c.group_protocol),
                              "value": c.value, "evidence": c.evidence} for c in self.result.cells])

    def killed_numbers(self) -> pd.DataFrame:
        """Per column and kind: the wait, the measured gap, the session and the broker's drop."""
        rows = []
        for c, p in self.columns:
            for b in ("join_after_killed_member_s", "static_member_rejoin_s"):
                m = self.measures(b, c, p)
                if not m:
                    continue
                gap, session = m.get("gap_s"), m.get("session_s")
                rows.append({"column": column_label(c, p), "behaviour": b, "value_s": m.get("value"),
                             "session_s": session, "gap_s": gap,
                             "session_minus_gap_s": None if gap is None or session is None
                             else round(session - gap, 3),
                             "broker_dropped_after_kill_s": m.get("removed_after_kill_s"),
                             "held_after_drop_s": m.get("after_removal_s")})
        return pd.DataFrame(rows)

    def lanes(self, kind: str) -> list[str]:
        """The timeline's lanes of ``kind`` (``killed``, ``static``, ``fj``), column order."""
        whos = list(dict.fromkeys(self.timeline.to_frame().who.astype(str)))
        out = []
        for c, p in self.columns:
            out += [w for w in whos if w.startswith(f"{c}-{p}-{kind}-")]
        return out


def member_joins(frame: pd.DataFrame) -> pd.DataFrame:
    """Per member of the two-member start (lanes ``*-fj-m1``/``m2``): its client's own join
    duration (``join_s`` of its first ``join`` event) next to the time from its ``run_called``
    to that event, both from its own events."""
    rows = []
    for who, g in frame[frame.who.astype(str).str.contains("-fj-m")].groupby("who", sort=False):
        called = g[g.what == "run_called"].t
        joins = g[g.what == "join"]
        if joins.empty:
            continue
        first = joins.iloc[0]
        detail = first.detail if isinstance(first.detail, dict) else {}
        rows.append({"member": who, "client": detail.get("client"),
                     "client_join_s": detail.get("join_s"),
                     "run_called_to_join_s": round(float(first.t - called.iloc[0]), 3)
                     if len(called) else None})
    return pd.DataFrame(rows, columns=["member", "client", "client_join_s", "run_called_to_join_s"])


def run_clients(broker: BrokerHandle, settings: ClientsSettings, columns: list[tuple[str, str]],
                *, log_dir: Path | str | None = None) -> ClientsRun:
    """Every row on every column at once on ``broker`` (the section's dedicated broker)."""
    timeline = Timeline()
    result = run_family(broker, FamilyParams(join=settings.join_params()), columns,
                        timeline=timeline, log_dir=log_dir, only=ROWS)
    return ClientsRun(result, timeline, list(columns))
