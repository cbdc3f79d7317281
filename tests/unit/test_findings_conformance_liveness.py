"""The liveness rows' findings (:mod:`offsetlab.lab.clients.conformance_findings_liveness`) on
hand-made cells, each coming out both ways (no broker)."""

from __future__ import annotations

from typing import Any

from offsetlab.lab.clients import conformance_findings_liveness as fl
from offsetlab.lab.clients.matrix import Cell
from offsetlab.lab.findings import assert_flips, flips


# -- findings --------------------------------------------------------------------------------
def cell(behaviour: str, value: Any, client: str = "kafka-python", proto: str = "classic") -> Cell:
    return Cell(behaviour=behaviour, client=client, group_protocol=proto, broker="kafka",
                value=value, evidence="hand-made")


@flips(fl.sleep_removed_by)
def test_sleep_removed_by_prints_the_cells_clock() -> None:
    for beh in ("sleep_evicted_by_session_first", "sleep_evicted_by_max_poll_first"):
        a = fl.sleep_removed_by(cell(beh, "max poll interval", "confluent-kafka", "consumer"))
        b = fl.sleep_removed_by(cell(beh, "session timeout", "confluent-kafka", "consumer"))
        assert a.name.startswith("confluent-kafka (KIP-848), ")
        assert assert_flips(a, b) == ("max poll interval", "session timeout")


@flips(fl.removed_by_session)
def test_removed_by_session_lists_the_columns() -> None:
    beh = "sleep_evicted_by_session_first"
    some = [cell(beh, "session timeout", "kafkajs"), cell(beh, "max poll interval")]
    none = [cell(beh, "max poll interval", "kafkajs"), cell(beh, "max poll interval")]
    assert assert_flips(fl.removed_by_session(some), fl.removed_by_session(none)) == (["kafkajs"], [])


@flips(fl.pause_kept)
def test_pause_kept_prints_the_cell() -> None:
    beh = "pause_keeps_membership"
    assert assert_flips(fl.pause_kept(cell(beh, True)), fl.pause_kept(cell(beh, False))) == (True, False)


@flips(fl.pause_on_error_kept)
def test_pause_on_error_kept_prints_the_cell() -> None:
    beh = "pause_on_error_keeps_membership"
    assert assert_flips(fl.pause_on_error_kept(cell(beh, True, "kafkajs")),
                        fl.pause_on_error_kept(cell(beh, False, "kafkajs"))) == (True, False)


@flips(fl.pause_survived)
def test_pause_survived_prints_the_cell() -> None:
    beh = "pause_survives_rebalance"
    assert assert_flips(fl.pause_survived(cell(beh, False)), fl.pause_survived(cell(beh, True))) == (False, True)
