"""E07's section on KafkaJS and confluent-kafka (:mod:`offsetlab.lab.experiments.e07_clients`
and its finders) on hand-made data, each finding coming out both ways (no broker)."""

from __future__ import annotations

import time

from offsetlab.lab.clients.conformance_liveness import LivenessParams
from offsetlab.lab.clients.matrix import Cell
from offsetlab.lab.experiments import e07_clients as e07c
from offsetlab.lab.experiments import e07_clients_findings as ff
from offsetlab.lab.findings import assert_flips, flips
from offsetlab.lab.timeline_core import Timeline


def _member(tl: Timeline, who: str, rows: list[tuple[float, str]]) -> None:
    for t, what in rows:
        tl.record(who, what, at=tl.t0 + t)


def test_longest_silence_counts_from_the_first_join_to_the_stop() -> None:
    beating = [(0.0, "join"), (1.0, "heartbeat"), (2.0, "heartbeat"), (3.0, "handled"),
               (3.5, "heartbeat"), (4.0, "consumer_stop"), (30.0, "heartbeat")]
    assert e07c.longest_silence(beating) == 1.5       # 2.0 -> 3.5; nothing after the stop counts
    blocked = [(0.0, "join"), (1.0, "heartbeat"), (25.0, "handled"), (26.0, "consumer_stop")]
    assert e07c.longest_silence(blocked) == 25.0      # 1.0 -> the stop at 26.0
    assert e07c.longest_silence([(0.0, "ready"), (1.0, "handled")]) is None


def test_heartbeat_silences_read_the_kafkajs_lanes_only() -> None:
    tl = Timeline()
    _member(tl, "sess-kjs-a", [(0.0, "join"), (0.5, "heartbeat"), (24.6, "handled"),
                               (25.0, "consumer_stop")])
    _member(tl, "pause-kjs-a", [(0.0, "join"), (1.0, "heartbeat"), (2.0, "heartbeat"),
                                (3.0, "consumer_stop")])
    _member(tl, "sess-kp-a", [(0.0, "join"), (24.0, "handled")])
    silences = e07c.heartbeat_silences(tl)
    assert silences == {"sleep_evicted_by_session_first": 24.5, "pause_keeps_membership": 1.0}
    assert e07c.lanes(tl, "sleep_evicted_by_session_first") == ["sess-kp-a", "sess-kjs-a"]


def test_session_of_each_case_is_the_drivers() -> None:
    p = LivenessParams()
    assert e07c.kafkajs_session_s("sleep_evicted_by_session_first", p) == p.short_ms / 1000
    assert e07c.kafkajs_session_s("pause_on_error_keeps_membership", p) == p.pause_session_ms / 1000


def test_value_table_rows_are_cases_columns_are_clients() -> None:
    cells = [Cell(behaviour="pause_keeps_membership", client=c, group_protocol=g, broker="kafka",
                  value=v, evidence="hand-made")
             for c, g, v in (("kafkajs", "classic", True), ("confluent-kafka", "consumer", False))]
    table = e07c.value_table(cells)
    assert list(table.index) == ["(b) pause()"]
    assert table.loc["(b) pause()", "kafkajs"] == True  # noqa: E712 - numpy/pandas bools
    assert table.loc["(b) pause()", "confluent-kafka (consumer)"] == False  # noqa: E712


def test_run_clients_skips_without_a_broker() -> None:
    from contextlib import nullcontext

    t0 = time.monotonic()
    run = e07c.run_clients(nullcontext(None), [("kafkajs", "classic")], LivenessParams())
    assert run.skipped and not run.cells and time.monotonic() - t0 < 1
    assert run.describe().startswith("skipped")
    job = e07c.start_clients(nullcontext(None), [("kafkajs", "classic")], LivenessParams())
    assert job.result(timeout=10).skipped


@flips(ff.kafkajs_silent_past_session)
def test_kafkajs_silence_against_the_session() -> None:
    quiet = ff.kafkajs_silent_past_session("(a) sleep, session < max poll", 24.5, 5.0)
    beating = ff.kafkajs_silent_past_session("(a) sleep, session < max poll", 1.1, 5.0)
    assert assert_flips(quiet, beating) == (True, False)
    assert quiet[0].name == "kafkajs, (a) sleep, session < max poll: longest time without a " \
                            "heartbeat > session timeout"
    assert ff.kafkajs_silent_past_session("(b) pause()", None, 5.0) == []
