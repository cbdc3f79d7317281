"""E01's section on every client: its own finder both ways, and the section's tables on
hand-made events (no broker)."""

from __future__ import annotations

import pandas as pd
from offsetlab.lab.experiments import e01_clients
from offsetlab.lab.experiments import e01_clients_findings as ff
from offsetlab.lab.findings import assert_flips, flips


@flips(ff.held_after_broker_drop)
def test_held_after_broker_drop() -> None:
    # a dynamic member held partitions 0.02 s after the broker's drop; a static one 8 s before it
    assert assert_flips(ff.held_after_broker_drop("kafkajs", 0.02, 9.5),
                        ff.held_after_broker_drop("kafkajs", -8.0, 10.0)) == (True, False)
    # no drop in the broker's log: not shown to have waited for it
    assert ff.held_after_broker_drop("kafkajs", None, None).value is False


def test_member_joins_reads_each_members_own_events() -> None:
    frame = pd.DataFrame([
        {"who": "kafkajs-classic-fj-m1", "what": "run_called", "t": 1.0, "detail": {"client": "kafkajs"}},
        {"who": "kafkajs-classic-fj-m1", "what": "join", "t": 7.5,
         "detail": {"client": "kafkajs", "join_s": 6.3}},
        {"who": "kafkajs-classic-fj-m2", "what": "run_called", "t": 1.2, "detail": {"client": "kafkajs"}},
        {"who": "kafkajs-classic-killed-a", "what": "join", "t": 2.0,
         "detail": {"client": "kafkajs", "join_s": 1.0}},
    ])
    got = e01_clients.member_joins(frame)
    assert got.to_dict("records") == [{"member": "kafkajs-classic-fj-m1", "client": "kafkajs",
                                       "client_join_s": 6.3, "run_called_to_join_s": 6.5}]


def test_settings_profiles() -> None:
    fast = e01_clients.ClientsSettings()
    assert fast.join_params().session_timeout_ms == 20000
    assert "group.initial.rebalance.delay.ms" not in fast.broker_settings()  # Kafka's default
    seed = e01_clients.ClientsSettings(session_timeout_ms=None, heartbeat_interval_ms=None,
                                       killed_gap_s=9.0, kip848_session_timeout_ms=45000,
                                       kip848_heartbeat_interval_ms=5000)
    assert seed.join_params().session_timeout_ms is None
    assert seed.broker_settings()["group.consumer.session.timeout.ms"] == 45000
