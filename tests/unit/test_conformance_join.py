"""The join/commit/failure rows of the conformance matrix on hand-made member events (no
broker): each value comes out both ways (the finders: test_findings_conformance_join.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from offsetlab.brokers import BrokerHandle
from offsetlab.lab.clients import conformance_commit as cc
from offsetlab.lab.clients import conformance_join as cj
from offsetlab.lab.clients import conformance_join_family as fam
from offsetlab.lab.clients import conformance_join_values as v

T = 1_800_000_000.0


def ev(event: str, at: float, **kw: Any) -> dict[str, Any]:
    return {"event": event, "at": T + at, "client": "kafkajs", **kw}


def assigned(at: float, *parts: int, kind: str = "assigned") -> dict[str, Any]:
    return ev(kind, at, partitions=[["t", p] for p in parts])


def handled(value: str, offset: int, at: float = 1.0) -> dict[str, Any]:
    return ev("handled", at, topic="t", partition=0, offset=offset, value=value)


def failed(value: str, offset: int, at: float = 1.0) -> dict[str, Any]:
    return ev("handler_failed", at, topic="t", partition=0, offset=offset, value=value,
              error="HandlerFailure: boom")


# -- first_join_s / run_returns_after_join ---------------------------------------------------
def test_first_join_is_when_both_hold_partitions_at_once() -> None:
    m1 = [ev("run_called", 0.0), assigned(3.1, 0, 1), assigned(6.0, 0, kind="revoked"),
          ev("join", 6.0), ev("run_returned", 6.1)]
    m2 = [ev("run_called", 0.2), ev("join", 6.05), assigned(6.05, 0)]
    # m1 gave partition 0 away at 6.0 and m2 got it at 6.05: both hold from 6.05
    assert v.first_join_value([m1, m2]) == pytest.approx(6.05)
    assert v.first_hold_value([m1, m2]) == pytest.approx(3.1)
    # an eager rebalance that takes everything from m1 first: not both at 6.05
    m1_eager = [*m1[:2], assigned(6.0, 0, 1, kind="revoked"), assigned(6.5, 1)]
    assert v.first_join_value([m1_eager, m2]) == pytest.approx(6.5)
    assert v.first_join_value([m1, [ev("run_called", 0.2)]]) is None


def test_returned_after_join_reads_the_event_order() -> None:
    after = [ev("run_called", 0), ev("join", 3), assigned(3, 0), ev("run_returned", 3)]
    before = [ev("run_called", 0), ev("run_returned", 0.01), ev("join", 3)]
    assert v.returned_after_join(after) is True
    assert v.returned_after_join(before) is False
    assert v.returned_after_join([ev("run_called", 0), ev("run_returned", 1)]) is False
    assert v.returned_after_join([ev("run_called", 0), ev("join", 3)]) is None


# -- join_after_killed_member_s / static_member_rejoin_s -------------------------------------
def _line(at: float, text: str) -> str:
    stamp = datetime.fromtimestamp(T + at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    return (f"{stamp} [group-coordinator-event-processor-0] INFO org.apache.kafka.coordinator."
            f"group.GroupMetadataManager - [GroupCoordinator id=1 topic=__consumer_offsets "
            f"partition=0] {text}")


def test_rejoin_gap_and_the_brokers_removal() -> None:
    b = [ev("ready", 2.5), ev("run_called", 3.0), ev("join", 15.2), assigned(15.2, 0, 1)]
    assert v.rejoin_value(b) == pytest.approx(12.2)
    assert v.killed_gap(T + 1.0, b) == pytest.approx(2.0)
    run = cj.KilledRun(b, T + 1.0, T + 15.0, 15000, "g1")
    assert run.value == pytest.approx(12.2) and run.after_removal == pytest.approx(0.2)
    classic = [_line(15.0, "Member m-1 in group g1 has failed, removing it from the group."),
               _line(15.0, "Member m-2 in group other has failed, removing it from the group.")]
    kip848 = [_line(14.0, "[GroupId g1] Member abc fenced from the group because the member "
                          "session expired.")]
    assert v.dead_member_removed_at(classic, "g1") == pytest.approx(T + 15.0)
    assert v.dead_member_removed_at(kip848, "g1") == pytest.approx(T + 14.0)
    assert v.dead_member_removed_at(classic, "g2") is None


def test_a_fatal_client_error_is_the_value_when_no_partitions_came() -> None:
    b = [ev("run_called", 3.0), ev("error", 3.4, where="error_cb", fatal=True,
                                    code="UNRELEASED_INSTANCE_ID",
                                    error="KafkaError: UNRELEASED_INSTANCE_ID: still used")]
    run = cj.KilledRun(b, T + 1.0, None, 15000, "g1")
    assert run.value == "fatal UNRELEASED_INSTANCE_ID"
    assert "never held partitions" in cj.killed_evidence(run, static=True)
    assert v.fatal_error([ev("error", 1, fatal=False, error="KafkaError: _TRANSPORT: x")]) is None
    assert v.fatal_error([ev("error", 1, fatal=False, code="_FATAL", error="KafkaError: _FATAL: x")]) == "_FATAL"


def test_session_is_the_clients_default_or_the_brokers_under_kip848() -> None:
    seed = cj.JoinParams.seed()
    assert cj.session_ms("kafkajs", "classic", seed) == 30000
    assert cj.session_ms("kafka-python", "classic", cj.JoinParams()) == 15000
    default = BrokerHandle("kafka", "127.0.0.1:1", "4.1.1", None, frozenset())
    low = BrokerHandle("kafka", "127.0.0.1:1", "4.1.1", None, frozenset(),
                       settings={"group.consumer.min.session.timeout.ms": 1000,
                                 "group.consumer.session.timeout.ms": 10000})
    assert cj.session_ms("confluent-kafka", "consumer", cj.JoinParams(), default) == 45000
    assert cj.session_ms("confluent-kafka", "consumer", cj.JoinParams(), low) == 15000
    assert cj.session_ms("confluent-kafka", "consumer", seed, low) == 10000


def test_kafkajs_static_membership_is_unsupported_without_a_run() -> None:
    broker = BrokerHandle("kafka", "127.0.0.1:1", "4.1.1", None, frozenset())
    cell = cj.run_static_member_rejoin(broker, "kafkajs", "classic", cj.JoinParams())
    assert cell.value == "unsupported"


# -- commits, batch failure, broker down --------------------------------------------------------
def test_rereads_count_what_the_restarted_member_handled_before_the_marker() -> None:
    assert cc.rereads([handled("5", 4), handled(cc.END, 5)]) == 1
    assert cc.rereads([handled(cc.END, 5)]) == 0


def test_redelivered_counts_failed_calls_too() -> None:
    only3 = [handled("1", 0), handled("2", 1), failed("3", 2), handled("3", 2), handled("4", 3),
             handled("5", 4), handled(cc.END, 5)]
    batch = [handled("1", 0), handled("2", 1), failed("3", 2), handled("4", 3), handled("5", 4),
             handled("3", 2), handled("4", 3), handled("5", 4)]
    assert cc.redelivered(only3) == ["3"]
    assert cc.redelivered(batch) == ["3", "4", "5"]
    assert cc.redelivered([handled("1", 0), handled("2", 1)]) == []
    assert cc.retry_after([failed("3", 2, at=1.0), handled("4", 3, at=1.1), handled("3", 2, at=1.4)]) == (
        pytest.approx(0.4))
    assert cc.retry_after([handled("3", 2)]) is None


def test_first_failure_names_the_code_or_the_class() -> None:
    rd = [ev("ready", 0.5), ev("error", 0.6, where="error_cb", fatal=False, code="_TRANSPORT",
                               error="KafkaError: _TRANSPORT: refused")]
    js = [ev("ready", 0.5), ev("error", 9.5, where="start", fatal=True,
                               error="KafkaJSNumberOfRetriesExceeded: Connection error")]
    py = [ev("error", 33.0, where="start", fatal=True, error="KafkaTimeoutError: bootstrap")]
    assert cc.first_failure(rd, T) == ("_TRANSPORT", pytest.approx(0.1))
    assert cc.first_failure(js, T) == ("KafkaJSNumberOfRetriesExceeded", pytest.approx(9.0))
    assert cc.first_failure(py, T) == ("KafkaTimeoutError", pytest.approx(33.0))
    assert cc.first_failure([ev("ready", 0.5)], T) is None


# -- the family runner: a failed run is a cell that says so -----------------------------------
def test_run_family_turns_a_failure_into_a_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = BrokerHandle("kafka", "127.0.0.1:1", "4.1.1", None, frozenset())

    def boom(*a: Any, **k: Any) -> Any:
        raise TimeoutError("no join")

    monkeypatch.setattr(cj, "run_join_after_killed_member", boom)
    r = fam.run_family(broker, columns=[("kafkajs", "classic")],
                       only=["join_after_killed_member_s", "static_member_rejoin_s"])
    assert r.cell("join_after_killed_member_s", "kafkajs").value == "failed: TimeoutError"
    assert r.cell("static_member_rejoin_s", "kafkajs").value == "unsupported"
    assert list(r.errors) == [("join_after_killed_member_s", "kafkajs", "classic")]
