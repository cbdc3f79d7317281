"""E02's finders on hand-made records: each comes out both ways."""

from __future__ import annotations

import pytest
from offsetlab.lab.experiments import e02_findings as f
from offsetlab.lab.findings import assert_flips, flips

ROW = {"connect": "returns KafkaConsumer", "subscribe": "returns None", "start/run": "returns dict",
       "commit": "returns None", "close": "returns None", "notes": ""}


@flips(f.matrix_line)
def test_matrix_line_is_the_recorded_row() -> None:
    ok = f.matrix_line("kafka-python", "success", ROW)
    raised = f.matrix_line("kafka-python", "success", {**ROW, "commit": "raises KafkaTimeoutError"})
    a, b = assert_flips(ok, raised)
    assert a == ("connect: returns KafkaConsumer | subscribe: returns None | start/run: returns dict | "
                 "commit: returns None | close: returns None")
    assert b.endswith("commit: raises KafkaTimeoutError | close: returns None")


@flips(f.notes_line)
def test_notes_line() -> None:
    assert assert_flips(f.notes_line("runner", "handler raises", "restarts: 1"),
                        f.notes_line("runner", "handler raises", "restarts: 0")) == ("restarts: 1", "restarts: 0")


@flips(f.runner_events)
def test_runner_events_keep_milestones_only() -> None:
    crashed = f.runner_events("handler raises", ["connect", "rebalance", "group_join", "commit", "crash",
                                                 "disconnect"])
    stopped = f.runner_events("handler raises", ["connect", "group_join", "stop", "disconnect"])
    assert assert_flips(crashed, stopped) == (["connect", "group_join", "crash", "disconnect"],
                                              ["connect", "group_join", "stop", "disconnect"])


@flips(f.runner_ended_after_stop)
def test_runner_ended_after_stop() -> None:
    running = f.runner_ended_after_stop({"state": "RUNNING", "after_s": 9.0}, 6.0)
    crashed = f.runner_ended_after_stop({"state": "CRASHED", "after_s": 9.0}, 6.0)
    restarting = f.runner_ended_after_stop({"state": "STARTING", "after_s": 9.0}, 6.0)
    assert assert_flips(running, crashed) == (False, True)
    assert restarting.value is False
    assert running.name == ("runner / broker stopped while running: ended by itself within 9 s of the "
                            "stop (session timeout 6 s)")
    with pytest.raises(ValueError, match="must exceed the session timeout"):
        f.runner_ended_after_stop({"state": "RUNNING", "after_s": 5.0}, 6.0)
