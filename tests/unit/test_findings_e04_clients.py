"""E04's client section (fail02 on every client): the finders of
:mod:`offsetlab.lab.experiments.e04_clients_findings` on hand-made events, each both ways."""

from __future__ import annotations

from typing import Any

from offsetlab.lab.experiments import e04_clients as e4
from offsetlab.lab.experiments import e04_clients_findings as ff
from offsetlab.lab.experiments.e03_clients import END, CaseRun
from offsetlab.lab.findings import assert_flips, flips


def ev(kind: str, at: float, value: str) -> dict[str, Any]:
    return {"event": kind, "at": at, "value": value, "partition": 0,
            "offset": int(value) - 1 if value.isdigit() else 5}


A_SKIP = [ev("handled", 1, "1"), ev("handler_failed", 2, "2"), ev("handled", 3, "3"),
          ev("handled", 4, "4"), ev("handled", 5, "5")]


def run(mode: str, b: list[str], a: list[dict[str, Any]] = A_SKIP) -> CaseRun:
    case = e4.fail02_cases([("confluent-kafka", "consumer")], modes=[mode])[0]
    return CaseRun(case=case, topic="t", group="g", a_events=a,
                   b_events=[ev("handled", 10 + i, v) for i, v in enumerate([*b, END])],
                   committed_after_a={0: 4 if mode == "message_offset" else 5})


def test_fail02_cases() -> None:
    cases = e4.fail02_cases([("kafkajs", "classic"), ("kafka-python", "classic")])
    assert [c.name for c in cases] == list(e4.MODES) * 2
    assert all(c.style == "message" and c.on_fail == "skip" and c.fail_value == "2"
               and c.a_done == "last" and c.commit == c.name for c in cases)
    assert list(e4.by_column([run("idiomatic", []), run("message_offset", ["5"])])) == [
        "confluent-kafka (consumer)"]


@flips(ff.restart_handled)
def test_restart_handled() -> None:
    assert assert_flips(ff.restart_handled(run("message_offset", ["5"])),
                        ff.restart_handled(run("message_offset", []))) == (["5"], [])


@flips(ff.skipped_lost)
def test_skipped_lost() -> None:
    assert assert_flips(ff.skipped_lost(run("idiomatic", [])),
                        ff.skipped_lost(run("idiomatic", ["2", "3", "4", "5"]))) == (["2"], [])


@flips(ff.only_message_offset_rereads)
def test_only_message_offset_rereads() -> None:
    good = [run("message_offset", ["5"]), run("offset_plus_one", []), run("idiomatic", [])]
    bad = [run("message_offset", ["5"]), run("offset_plus_one", []), run("idiomatic", ["5"])]
    none = [run("message_offset", []), run("offset_plus_one", []), run("idiomatic", [])]
    col = "confluent-kafka (consumer)"
    assert assert_flips(ff.only_message_offset_rereads(col, good),
                        ff.only_message_offset_rereads(col, bad)) == (True, False)
    assert ff.only_message_offset_rereads(col, none).value is False
