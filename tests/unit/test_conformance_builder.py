"""Notebook 09's builder (:mod:`offsetlab.lab.clients.conformance`) on hand-made cells (no
broker): every behaviour x column written, checked and read back; the families run at once
(fakes); failures become cells that say so; the findings and the answer read the cells."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from offsetlab.lab.answers import answer_for
from offsetlab.lab.clients import conformance as cf
from offsetlab.lab.clients import conformance_join_family as jf
from offsetlab.lab.clients import conformance_liveness as lv
from offsetlab.lab.clients.matrix import BEHAVIOURS, COLUMNS, Cell, read_conformance

#: a plausible value per row (what the runs gave)
VALUES: dict[str, Any] = {
    "first_join_s": 3.4, "run_returns_after_join": True, "join_after_killed_member_s": 12.5,
    "static_member_rejoin_s": 0.4, "sleep_evicted_by_session_first": "max poll interval",
    "sleep_evicted_by_max_poll_first": "max poll interval", "pause_keeps_membership": True,
    "pause_on_error_keeps_membership": True, "pause_survives_rebalance": True,
    "commit_message_offset_rereads": 1, "idiomatic_commit_rereads": 0,
    "batch_failure_redelivered": ["3"], "broker_down_at_start": "_TRANSPORT"}
MEASURES: dict[str, dict[str, Any]] = {
    "first_join_s": {"first_hold_s": 3.2, "delay_s": 3.0},
    "join_after_killed_member_s": {"value": 12.5, "session_s": 15.0, "gap_s": 2.0},
    "static_member_rejoin_s": {"value": 0.4, "session_s": 15.0, "gap_s": 2.0},
    "commit_message_offset_rereads": {"committed": 4, "messages": 5},
    "idiomatic_commit_rereads": {"committed": 5, "messages": 5},
    "broker_down_at_start": {"seconds": 0.5}}


def cell(behaviour: str, client: str, proto: str, value: Any = None) -> Cell:
    return Cell(behaviour=behaviour, client=client, group_protocol=proto, broker="kafka",
                value=VALUES[behaviour] if value is None else value, evidence=f"hand-made {behaviour}")


def result(columns: list[tuple[str, str]] | None = None, **changed: Any) -> cf.MatrixResult:
    columns = list(COLUMNS) if columns is None else columns
    cells = [cell(b, c, g, changed.get(f"{b}/{c}/{g}")) for b in BEHAVIOURS for c, g in columns]
    measures = {(b, c, g): dict(MEASURES.get(b, {})) for b in BEHAVIOURS for c, g in columns}
    return cf.MatrixResult(cells, measures, {}, {"total": 1.0}, list(columns))


def test_every_behaviour_and_column_is_written_and_read_back(tmp_path: Path) -> None:
    r = result()
    assert cf.write_matrix(tmp_path / "conformance.json", r) == []
    back = read_conformance(tmp_path / "conformance.json")
    assert {(c.behaviour, c.client, c.group_protocol) for c in back} == {
        (b, c, g) for b in BEHAVIOURS for c, g in COLUMNS}
    assert back == r.cells
    rows = json.loads((tmp_path / "conformance.json").read_text())
    assert set(rows[0]) == {"behaviour", "client", "group_protocol", "broker", "value", "evidence"}
    table = cf.matrix_table(back)
    assert list(table.index) == list(BEHAVIOURS)
    assert list(table.columns) == ["kafka-python", "kafkajs", "confluent-kafka",
                                   "confluent-kafka (KIP-848)"]
    assert table.loc["batch_failure_redelivered", "kafkajs"] == "[3]"
    assert len(cf.evidence_table(back)) == len(BEHAVIOURS) * len(COLUMNS)


def test_a_missing_or_unallowed_cell_is_a_problem_and_a_skipped_column_is_not(tmp_path: Path) -> None:
    r = result()
    r.cells = [c for c in r.cells if (c.behaviour, c.client) != ("first_join_s", "kafkajs")]
    assert any("first_join_s" in p and "kafkajs" in p
               for p in cf.write_matrix(tmp_path / "a.json", r))
    bad = result(**{"pause_keeps_membership/kafka-python/classic": "n/a"})
    assert cf.write_matrix(tmp_path / "b.json", bad)
    no_node = result([c for c in COLUMNS if c[0] != "kafkajs"])
    assert cf.write_matrix(tmp_path / "c.json", no_node) == []


def test_findings_name_the_column_and_leave_failed_cells_out() -> None:
    r = result()
    found = cf.matrix_findings(r)
    names = [f.name for f in found]
    per_column = (len(found) - 1) // len(COLUMNS)
    assert per_column == 14 and names[-1].startswith("blocked handler, session < max poll")
    assert sum(n.startswith("confluent-kafka (KIP-848): ") or
               n.startswith("confluent-kafka (KIP-848), ") for n in names) == per_column
    r.errors[("batch_failure_redelivered", "kafkajs", "classic")] = "TimeoutError: x"
    assert len(cf.matrix_findings(r)) == len(found) - 1


def test_the_answer_comes_from_the_cells_both_ways() -> None:
    def answer(r: cf.MatrixResult) -> str:
        return answer_for("09_client_conformance",
                          {f.name: f.value for f in cf.matrix_findings(r)}).answer

    same = answer(result())
    assert same.startswith("yes: every row compared came out the same")
    differ = answer(result(**{"sleep_evicted_by_session_first/kafkajs/classic": "session timeout"}))
    assert differ.startswith("no: they differ on a blocked handler;")
    assert "removed by the session timeout on kafkajs" in differ


class _Broker:
    kind = "kafka"
    settings: dict[str, Any] = {}


def test_the_families_run_at_once_and_a_failure_is_a_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    both = threading.Barrier(2, timeout=10)  # each family waits for the other: concurrent
    live_rows = [b for b in BEHAVIOURS if b in lv.BEHAVIOURS]

    def join_family(broker: Any, params: Any, columns: Any, **kw: Any) -> jf.FamilyResult:
        both.wait()
        cells = [cell(b, c, g) for b in jf.FAMILY_BEHAVIOURS for c, g in columns]
        return jf.FamilyResult(cells, {}, 1.0, {})

    def live_family(broker: Any, params: Any, columns: Any, **kw: Any) -> list[Cell]:
        both.wait()
        ok = [cell(b, c, g) for b in live_rows for c, g in columns
              if (b, c) != ("pause_survives_rebalance", "kafkajs")]
        raise lv.FamilyFailed(ok, [("pause_survives_rebalance", "kafkajs", "classic",
                                    "TimeoutError: never held")])

    monkeypatch.setattr(jf, "run_family", join_family)
    monkeypatch.setattr(lv, "run_family", live_family)
    r = cf.run_matrix(_Broker(), columns=COLUMNS, timeline=None)  # type: ignore[arg-type]
    assert [(c.behaviour, c.client, c.group_protocol) for c in r.cells] == [
        (b, c, g) for b in BEHAVIOURS for c, g in COLUMNS]
    failed = r.cell("pause_survives_rebalance", "kafkajs")
    assert failed.value == "failed: TimeoutError" and "never held" in failed.evidence
    assert r.errors == {("pause_survives_rebalance", "kafkajs", "classic"): "TimeoutError: never held"}
    assert set(r.wall_s) == {"join", "liveness", "total"}


class _Lab:
    def __init__(self, shared: bool, settings: dict[str, Any]) -> None:
        self.shared_given, self.broker_kind = shared, "kafka"
        self.broker = type("B", (), {"settings": settings})()
        self.dedicated_with: list[Any] = []

    @contextmanager
    def dedicated(self, settings: Any) -> Any:
        self.dedicated_with.append(settings)
        yield "dedicated"


def test_the_matrix_broker_is_the_notebooks_own_only_with_the_settings() -> None:
    own = _Lab(False, {**cf.BROKER_SETTINGS, "other": 1})
    with cf.matrix_broker(own) as b:
        assert b is own.broker and own.dedicated_with == []
    for lab in (_Lab(True, dict(cf.BROKER_SETTINGS)), _Lab(False, {})):
        with cf.matrix_broker(lab) as b:
            assert b == "dedicated" and lab.dedicated_with == [cf.BROKER_SETTINGS]
    assert cf.BROKER_SETTINGS["group.initial.rebalance.delay.ms"] == 3000
    assert cf.BROKER_SETTINGS["group.consumer.min.session.timeout.ms"] <= 5000
