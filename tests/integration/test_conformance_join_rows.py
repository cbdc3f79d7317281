"""The join/commit/failure rows of the conformance matrix, once each on the embedded Kafka for
KafkaJS and confluent-kafka (classic), all at once (:func:`run_family`): short sessions."""

from __future__ import annotations

from pathlib import Path

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.clients import conformance_findings_join as ff
from offsetlab.lab.clients.conformance_commit import CommitParams
from offsetlab.lab.clients.conformance_join import JoinParams
from offsetlab.lab.clients.conformance_join_family import (
    FAMILY_BEHAVIOURS,
    FamilyParams,
    run_family,
)
from offsetlab.lab.timeline_core import Timeline

COLUMNS = [("kafkajs", "classic"), ("confluent-kafka", "classic")]


def test_every_row_once_for_kafkajs_and_confluent(kafka_broker: BrokerHandle, tmp_path: Path) -> None:
    # the fixture's broker: initial rebalance delay 0, classic minimum session 6 s
    params = FamilyParams(join=JoinParams(session_timeout_ms=8000, heartbeat_interval_ms=1000,
                                          killed_gap_s=1.0, join_wait_s=60.0),
                          commit=CommitParams(wait_s=60.0, broker_down_cap_s=40.0))
    r = run_family(kafka_broker, params, COLUMNS, timeline=Timeline(), log_dir=tmp_path)
    assert r.errors == {}
    assert {(c.behaviour, c.client) for c in r.cells} == {
        (b, client) for b in FAMILY_BEHAVIOURS for client, _ in COLUMNS}
    for client, proto in COLUMNS:
        def cell(b: str, client: str = client) -> object:
            return r.cell(b, client).value

        assert isinstance(cell("first_join_s"), float)
        assert cell("run_returns_after_join") is True
        killed = r.measures[("join_after_killed_member_s", client, proto)]
        assert ff.waits_out_session(client, killed["value"], killed["session_s"],
                                    killed["gap_s"]).value is True, r.cell(
            "join_after_killed_member_s", client).evidence
        assert cell("commit_message_offset_rereads") == 1
        assert cell("idiomatic_commit_rereads") == 0
        assert cell("batch_failure_redelivered") == ["3"]
    static = r.measures[("static_member_rejoin_s", "confluent-kafka", "classic")]
    assert ff.static_beats_session("c", static["value"], static["session_s"],
                                   static["gap_s"]).value is True
    assert r.cell("static_member_rejoin_s", "kafkajs").value == "unsupported"
    assert r.cell("broker_down_at_start", "kafkajs").value.startswith("KafkaJS")
    assert r.cell("broker_down_at_start", "confluent-kafka").value == "_TRANSPORT"
