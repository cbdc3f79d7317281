"""E03's client section (fail01 on every client): the values and finders of
:mod:`offsetlab.lab.experiments.e03_clients` on hand-made events, each finder both ways."""

from __future__ import annotations

from typing import Any

from offsetlab.lab.experiments import e03_clients as ec
from offsetlab.lab.experiments import e03_clients_findings as ff
from offsetlab.lab.findings import assert_flips, flips


def ev(kind: str, at: float, value: str | None = None, **kw: Any) -> dict[str, Any]:
    e = {"event": kind, "at": at, "client": "kafkajs", **kw}
    if value is not None:
        e.update(value=value, offset=int(value) - 1 if value.isdigit() else 9, partition=0)
    return e


def run(a: list[dict[str, Any]], b: list[dict[str, Any]] | None = None, *, name: str = "throw",
        committed: int | None = 6) -> ec.CaseRun:
    case = ec.Case(client="kafkajs", name=name, on_fail=name if name != "x" else "throw")
    return ec.CaseRun(case=case, topic="t", group="g", a_events=a, b_events=b or [],
                      committed_after_a={} if committed is None else {0: committed})


# A throws at 3, KafkaJS commits 2 and hands 3, 4, 5 over again (no crash)
THROW = [ev("handled", 1, "1"), ev("handled", 2, "2"), ev("handler_failed", 3, "3"),
         ev("commit", 3.1, offset=2), ev("handled", 3.5, "3"), ev("handled", 4, "4"),
         ev("handled", 5, "5"), ev("handled", 6, ec.END_A), ev("commit", 6.1, offset=6)]
# A returns at 3, KafkaJS resolves the batch's last offset: 4, 5 never handled
RETURN = [ev("handled", 1, "1"), ev("handled", 2, "2"), ev("handler_failed", 3, "3"),
          ev("commit", 3.1, offset=5), ev("handled", 6, ec.END_A), ev("commit", 6.1, offset=6)]
# A crashes after the failure, KafkaJS restarts it and 3 comes back
CRASH = [ev("handled", 1, "1"), ev("handled", 2, "2"), ev("handler_failed", 3, "3"),
         ev("crash", 3.2, error="KafkaJSNumberOfRetriesExceeded: x", restart=True),
         ev("handled", 4, "3"), ev("handled", 5, "4"), ev("handled", 6, "5")]


def test_values_from_events() -> None:
    r = run(THROW)
    assert r.again() == ["3"] and r.lost() == [] and r.restart() == []
    assert r.order() == ["1", "2", "3!", "3", "4", "5"] and r.a_commits() == [2, 6]
    assert run(RETURN, name="return").lost() == ["3", "4", "5"]
    # the restarted member handled what A left: nothing lost
    assert run(RETURN, [ev("handled", 8, "3"), ev("handled", 9, "4")], name="return").lost() == ["5"]
    assert ec.resumes_at(2, 5) == "msg 3" and ec.resumes_at(6, 5) == "end"
    assert ec.resumes_at(None, 5) == "none"
    assert ec.given_again([ev("handled", 1, "10"), ev("handled", 2, "2"), ev("handled", 3, "10"),
                           ev("handled", 4, "2")], ["2", "10"]) == ["2", "10"]


def test_fail01_cases_add_the_auto_resolve_variant_on_kafkajs_only() -> None:
    cases = ec.fail01_cases([("kafka-python", "classic"), ("kafkajs", "classic")])
    names = [(c.client, c.name) for c in cases]
    assert names.count(("kafkajs", "return, eachBatchAutoResolve false")) == 1
    assert len([n for n in names if n[0] == "kafka-python"]) == 3
    assert all(c.style == "batch" and c.commit == "idiomatic" for c in cases)


@flips(ff.handed_again)
def test_handed_again() -> None:
    assert assert_flips(ff.handed_again(run(THROW)),
                        ff.handed_again(run(RETURN))) == (["3"], [])


@flips(ff.lost_after_restart)
def test_lost_after_restart() -> None:
    assert assert_flips(ff.lost_after_restart(run(THROW)),
                        ff.lost_after_restart(run(THROW[:3] + THROW[-2:]))) == ([], ["3", "4", "5"])


@flips(ff.commits_before_retry)
def test_commits_before_retry() -> None:
    assert assert_flips(ff.commits_before_retry(run(THROW)),
                        ff.commits_before_retry(run(CRASH))) == ([2], [])
    # never came back: every later commit counts
    assert ff.commits_before_retry(run(RETURN)).value == [5, 6]


@flips(ff.crashes_before_retry)
def test_crashes_before_retry() -> None:
    assert assert_flips(ff.crashes_before_retry(run(CRASH)), ff.crashes_before_retry(run(THROW))
                        ) == (["KafkaJSNumberOfRetriesExceeded (restart True)"], [])


@flips(ff.committed_past_before_failure)
def test_committed_past_before_failure() -> None:
    # kafka-python's commit() commits the poll's position: 5 after message 1
    early = [ev("handled", 1, "1"), ev("commit", 1.1, offset=5), ev("handler_failed", 3, "3")]
    assert assert_flips(ff.committed_past_before_failure(run(early)),
                        ff.committed_past_before_failure(run(THROW))) == (True, False)
