"""``run_returns_after_join`` read from both sides: the member's ``run_returned`` against the
broker log's line that completed its join (no broker: hand-made events and log lines), and the
broker log's join-complete kinds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from offsetlab.lab import broker_log
from offsetlab.lab.clients import conformance_join as cj
from offsetlab.lab.clients import conformance_join_values as v
from offsetlab.lab.clients.matrix import BEHAVIOURS

T = 1_800_000_000.0


def ev(event: str, at: float, **kw: Any) -> dict[str, Any]:
    return {"event": event, "at": T + at, "client": "kafkajs", **kw}


def line(at: float, text: str) -> str:
    stamp = datetime.fromtimestamp(T + at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
    return (f"{stamp} [group-coordinator-event-processor-0] INFO org.apache.kafka.coordinator."
            f"group.GroupMetadataManager - [GroupCoordinator id=1 topic=__consumer_offsets "
            f"partition=0] {text}")


CLASSIC = [
    line(0.10, "Pending dynamic member with id m1-aa joins group g in Empty state. Adding to the "
               "group now."),
    line(3.10, "Stabilized group g generation 1 with 2 members."),
    line(3.15, "Assignment received from leader m1-aa for group g for generation 1. The group has "
               "2 members, 0 of which are static."),
    line(5.00, "Pending dynamic member with id m3-cc joins group g in Stable state. Adding to the "
               "group now."),
    line(8.00, "Stabilized group g generation 2 with 3 members."),
    line(8.02, "Assignment received from leader m1-aa for group g for generation 2. The group has "
               "3 members, 0 of which are static."),
]
CONSUMER = [
    line(0.10, "[GroupId g] Member XyZ joins the consumer group using the consumer protocol."),
    line(0.11, "[GroupId g] Bumped group epoch to 1 with metadata hash 42."),
    line(0.11, "[GroupId g] Computed a new target assignment for epoch 1 with 'uniform' assignor "
               "in 0ms."),
]


def log(lines: list[str]) -> list[broker_log.GroupLogEvent]:
    return broker_log.group_events(lines, "g")


def test_the_classic_join_lines_parse() -> None:
    stable, received = log(CLASSIC)[1:3]
    assert (stable.kind, stable.member, stable.reason) == ("stabilized", None, "1")
    assert (received.kind, received.member, received.reason) == ("assignment_received", "m1-aa", "1")
    assert received.at == pytest.approx(T + 3.15, abs=1e-3)
    assert [e.kind for e in log(CLASSIC)] == ["joined", "stabilized", "assignment_received",
                                              "joined", "stabilized", "assignment_received"]
    assert "stabilized" not in broker_log.REBALANCES + broker_log.REMOVALS
    assert broker_log.JOIN_COMPLETES == ("assignment_received", "epoch_bump")


def test_the_join_line_is_the_members_generation() -> None:
    python = [ev("run_called", 0.0), ev("join", 3.2, generation=2, member_id="m1-aa")]
    assert v.join_completed_at(log(CLASSIC), python, "classic").reason == "2"
    # KafkaJS gives no generation: the first assignment after the broker admitted the member
    late_joiner = [ev("run_called", 4.9), ev("join", 8.1, generation=None, member_id="m3-cc")]
    assert v.join_completed_at(log(CLASSIC), late_joiner, "classic").reason == "2"
    early = [ev("run_called", 0.0), ev("join", 3.2, generation=None, member_id="m1-aa")]
    assert v.join_completed_at(log(CLASSIC), early, "classic").reason == "1"
    # a member id the log does not name: the first assignment after its run_called
    unknown = [ev("run_called", 4.0), ev("join", 8.1, generation=None, member_id="zz")]
    assert v.join_completed_at(log(CLASSIC), unknown, "classic").reason == "2"
    kip848 = [ev("run_called", 0.0), ev("join", 0.5, generation=1, member_id="XyZ")]
    assert v.join_completed_at(log(CONSUMER), kip848, "consumer").kind == "epoch_bump"
    assert v.join_completed_at([], python, "classic") is None


def test_a_call_that_returned_before_the_broker_completed_the_join_reads_false() -> None:
    """The flip: the same member's events with run_returned after / before the broker's line."""
    join = ev("join", 3.2, generation=1, member_id="m1-aa")
    after = [ev("run_called", 0.0), join, ev("run_returned", 3.25)]
    before = [ev("run_called", 0.0), ev("run_returned", 0.05), join]
    ok, early = (v.returned_after_broker_join(log(CLASSIC), e, "classic") for e in (after, before))
    assert (ok.after, early.after) == (True, False)
    assert ok.margin_s == pytest.approx(0.1, abs=0.002)
    assert early.margin_s == pytest.approx(-3.1, abs=0.002)
    assert "returned -3.1" in early.describe()
    # the event order alone (the old reading) cannot tell: join before run_returned in both
    reordered = [ev("run_called", 0.0), ev("join", 0.01, generation=1, member_id="m1-aa"),
                 ev("run_returned", 0.02)]
    assert v.returned_after_join(reordered) is True
    assert v.returned_after_broker_join(log(CLASSIC), reordered, "classic").after is False
    never = v.returned_after_broker_join(log(CLASSIC), [ev("run_called", 0.0)], "classic")
    assert never.after is None and never.describe() == "never returned"
    no_line = v.returned_after_broker_join([], after, "classic")
    assert no_line.after is None and "no join-complete line" in no_line.describe()
    kip848 = [ev("run_called", 0.0), ev("join", 0.5, generation=1, member_id="XyZ")]
    assert v.returned_after_broker_join(log(CONSUMER), [*kip848, ev("run_returned", 0.6)],
                                        "consumer").after is True
    assert v.returned_after_broker_join(log(CONSUMER), [ev("run_called", 0.0),
                                                        ev("run_returned", 0.05), kip848[1]],
                                        "consumer").after is False


class _Broker:
    kind = "kafka"
    settings: dict[str, Any] = {}


def test_the_cell_comes_out_both_ways() -> None:
    join = [ev("join", 3.2, generation=1, member_id="m1-aa"), ev("assigned", 3.2,
                                                                  partitions=[["t", 0]])]
    good = [[ev("run_called", 0.0), *join, ev("run_returned", 3.3)]] * 2
    bad = [good[0], [ev("run_called", 0.0), ev("run_returned", 0.1), *join]]
    cells = [cj._first_join_cells(_Broker(), "kafkajs", "classic", evs, "g", {},  # type: ignore[arg-type]
                                  log(CLASSIC))[1] for evs in (good, bad)]
    assert [c.behaviour for c in cells] == ["run_returns_after_join"] * 2
    assert [c.value for c in cells] == [True, False]
    assert "Assignment received" in cells[0].evidence
    missing = cj._first_join_cells(_Broker(), "kafkajs", "classic", good, "g", {}, [])[1]  # type: ignore[arg-type]
    assert missing.value == "not measured"
    assert "run_returns_after_join" in BEHAVIOURS
