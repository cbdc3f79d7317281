"""E02's client-section finders on hand-made events, each coming out both ways (no broker)."""

from __future__ import annotations

from typing import Any

from offsetlab.lab.experiments import e02_clients_findings as ff
from offsetlab.lab.findings import assert_flips, flips


def ev(event: str, at: float, **kw: Any) -> dict[str, Any]:
    return {"event": event, "at": at, **kw}


RUN02_JS = [ev("ready", 0), ev("run_called", 0.1), ev("join", 0.5, partitions=[["t", 0]]),
            ev("run_returned", 0.6, returned={"connect": "undefined", "subscribe": "undefined",
                                              "run": "undefined"}),
            ev("handled", 0.7), ev("heartbeat", 0.8), ev("commit", 0.9, offset=3),
            ev("consumer_stop", 1), ev("disconnect", 1), ev("stopped", 1, clean=True)]
RUN02_PY = [ev("ready", 0), ev("run_called", 0.1), ev("join", 0.5), ev("run_returned", 0.6, records=0),
            ev("handled", 0.7), ev("commit", 0.9, offset=3), ev("stopped", 1, clean=True)]


@flips(ff.run02_kinds)
def test_run02_kinds_leaves_heartbeat_out() -> None:
    js, py = assert_flips(ff.run02_kinds("c", RUN02_JS), ff.run02_kinds("c", RUN02_PY))
    assert "heartbeat" not in js and "disconnect" in js and "disconnect" not in py
    assert ff.run02_kinds("c", RUN02_JS).measured == {"heartbeats": 1}


@flips(ff.run02_returned)
def test_run02_returned_reads_the_kafkajs_values() -> None:
    js, py = assert_flips(ff.run02_returned("c", RUN02_JS), ff.run02_returned("c", RUN02_PY))
    assert js == ["undefined", "undefined", "undefined"] and py is None


DOWN_JS = [ev("ready", 10), ev("error", 17.6, where="start", fatal=True,
                                error="KafkaJSNumberOfRetriesExceeded: Connection error"),
           ev("stopped", 17.6, clean=False)]
DOWN_RD = [ev("ready", 10), ev("run_called", 10),
           ev("error", 10.01, where="error_cb", fatal=False, code="_TRANSPORT", error="KafkaError: x"),
           ev("error", 10.02, where="error_cb", fatal=False, code="_ALL_BROKERS_DOWN", error="KafkaError: y"),
           ev("stopped", 25, clean=True)]


@flips(ff.down_ends_by_itself)
def test_down_ends_by_itself_needs_an_unclean_stop() -> None:
    js = ff.down_outcome(DOWN_JS, 9.0, 15)
    rd = ff.down_outcome(DOWN_RD, 9.0, 15)
    assert assert_flips(ff.down_ends_by_itself("c", js), ff.down_ends_by_itself("c", rd)) == (True, False)
    assert js["first_s"] == 7.6 and rd["names"] == ["_ALL_BROKERS_DOWN", "_TRANSPORT"]


@flips(ff.down_first_report)
def test_down_first_report_names_class_or_code() -> None:
    one = ff.down_first_report("c", ff.down_outcome(DOWN_JS, 9.0, 15))
    other = ff.down_first_report("c", ff.down_outcome(DOWN_RD, 9.0, 15))
    assert assert_flips(one, other) == ("KafkaJSNumberOfRetriesExceeded", "_TRANSPORT")


def test_down_without_ready_counts_from_the_spawn() -> None:
    events = [ev("error", 12.5, where="start", fatal=True, error="KafkaTimeoutError: boot"),
              ev("stopped", 12.5, clean=False)]
    out = ff.down_outcome(events, 10.0, 15)
    assert out["first_s"] == 2.5 and out["ended_by_itself"]


REFUSED_JS = [ev("ready", 0), ev("run_called", 0.1), ev("consumer_stop", 0.2), ev("disconnect", 0.2),
              ev("crash", 0.2, error="KafkaJSProtocolError: session timeout", restart=False),
              ev("run_returned", 0.2, returned={})]
REFUSED_PY = [ev("ready", 0), ev("run_called", 0.1)] + [
    ev("error", 0.2 + i / 10, where="poll", fatal=False,
       error="InvalidSessionTimeoutError: [Error 26]") for i in range(3)]
JOINED = [ev("ready", 0), ev("run_called", 0.1), ev("join", 0.4, partitions=[["t", 0]]),
          ev("run_returned", 0.5, returned={})]
REJECTED = [ev("ready", 0), ev("run_called", 0.1), ev("error", 0.3, where="run", fatal=True,
                                                       error="KafkaJSError: no"),
            ev("stopped", 0.3, clean=False)]


@flips(ff.refused_joined)
def test_refused_joined_needs_partitions() -> None:
    assert assert_flips(ff.refused_joined("c", ff.refused_outcome(REFUSED_JS, 0)),
                        ff.refused_joined("c", ff.refused_outcome(JOINED, 0))) == (False, True)


@flips(ff.refused_run_settled)
def test_refused_run_resolved_rejected_or_neither() -> None:
    res = ff.refused_run_settled("c", ff.refused_outcome(REFUSED_JS, 0))
    rej = ff.refused_run_settled("c", ff.refused_outcome(REJECTED, 0))
    assert assert_flips(res, rej) == ("resolved", "rejected")
    assert ff.refused_outcome(REFUSED_PY, 0)["run"] == "neither"
    assert res.measured["crashes"] == [("KafkaJSProtocolError", False)]


@flips(ff.refused_first_report)
def test_refused_first_report() -> None:
    js = ff.refused_first_report("c", ff.refused_outcome(REFUSED_JS, 0))
    py = ff.refused_first_report("c", ff.refused_outcome(REFUSED_PY, 0))
    assert assert_flips(js, py) == ("KafkaJSProtocolError", "InvalidSessionTimeoutError")
    assert ff.refused_outcome(REFUSED_PY, 0)["error_reports"] == 3
