"""E04's finders on hand-made results: each comes out both ways."""

from __future__ import annotations

from offsetlab.lab.experiments import e04_findings as f
from offsetlab.lab.experiments.e03_scenario import Attempt, Flaky, Message, ScenarioResult
from offsetlab.lab.experiments.e04_kill import KillCase
from offsetlab.lab.experiments.e04_max_poll import MaxPollCase, removals
from offsetlab.lab.findings import assert_flips, flips
from offsetlab.lab.timeline import Timeline


def _result(name: str, processed: list[int], committed: int, *, n: int = 5,
            attempts: list[Attempt] | None = None,
            restart: tuple[int, ...] | None = None) -> ScenarioResult:
    flaky = Flaky(fail_number=2)
    flaky.processed = list(processed)
    return ScenarioResult(name=name, topic="t", group="g",
                          messages=[Message(i, f"k{i}", 0, i - 1) for i in range(1, n + 1)],
                          flaky=flaky, attempts=attempts or [], committed={0: committed},
                          end_offsets={0: n}, timeline=Timeline(), restart_delivered=restart)


@flips(f.mode_outcome)
def test_mode_outcome_lost_and_twice() -> None:
    clean = f.mode_outcome(_result("commit offset+1, stop at the failure", [1, 2, 3, 4, 5], 5))
    skipped = f.mode_outcome(_result("commit offset+1, stop at the failure", [1, 3, 4, 5, 5], 5))
    assert assert_flips(clean, skipped, "commit offset+1, stop at the failure: lost") == ([], [2])
    assert assert_flips(clean, skipped, "commit offset+1, stop at the failure: processed twice") == ([], [5])


@flips(f.skip_loses)
def test_skip_loses() -> None:
    lost = [_result("commit offset, skip the failure", [1, 3, 4, 5], 5)]
    kept = [_result("commit offset, skip the failure", [1, 2, 3, 4, 5], 5)]
    assert assert_flips(f.skip_loses(lost, 2), f.skip_loses(kept, 2)) == (True, False)


@flips(f.offset_restarts_at_last)
def test_offset_restarts_at_last() -> None:
    first = [Attempt(1, "consumer", (1, 2), (1,), (2,), {0: 0})]
    at_last = _result("commit offset, stop at the failure", [1, 1, 2], 5, attempts=first, restart=(1, 2))
    after = _result("commit offset, stop at the failure", [1, 2], 5, attempts=first, restart=(2,))
    assert assert_flips(f.offset_restarts_at_last([at_last]), f.offset_restarts_at_last([after])) == (True, False)


@flips(f.offset1_rereads_nothing)
def test_offset1_rereads_nothing() -> None:
    once = _result("commit offset+1, skip the failure", [1, 3, 4, 5], 5)
    twice = _result("commit offset+1, skip the failure", [1, 3, 3, 4, 5], 5)
    assert assert_flips(f.offset1_rereads_nothing([once]), f.offset1_rereads_nothing([twice])) == (True, False)


@flips(f.runner_exception_clean)
def test_runner_exception_clean() -> None:
    clean = _result("runner, handler raises", [1, 2, 3, 4, 5], 5)
    dup = _result("runner, handler raises", [1, 1, 2, 3, 4, 5], 5)
    assert assert_flips(f.runner_exception_clean(clean), f.runner_exception_clean(dup)) == (True, False)


@flips(f.runner_restart_starts_at)
def test_runner_restart_starts_at() -> None:
    a = [Attempt(1, "runner", (1, 2), (1,), (2,), {0: 1}), Attempt(2, "runner (restart 1)", (2, 3), (2, 3), (), {0: 3})]
    b = [Attempt(1, "runner", (1, 2), (1,), (2,), {0: 1}), Attempt(2, "runner (restart 1)", (1, 2), (1, 2), (), {0: 3})]
    one = f.runner_restart_starts_at(_result("runner, handler raises", [], 3, attempts=a))
    other = f.runner_restart_starts_at(_result("runner, handler raises", [], 3, attempts=b))
    assert assert_flips(one, other) == (2, 1)


def _kill(style: str, killed: list[int], restart: list[int]) -> KillCase:
    return KillCase(style, 5, 3, killed_processed=killed, restart_processed=restart)


@flips(f.kill_outcome)
def test_kill_outcome() -> None:
    one = f.kill_outcome(_kill("offset+1", [1, 2, 3], [3, 4, 5]))
    other = f.kill_outcome(_kill("offset+1", [1, 2, 3], [4, 5]))
    name = "killed after processing message 3 before its commit, offset+1: re-processed by the restart"
    assert assert_flips(one, other, name) == ([3], [])
    lost = f.kill_outcome(_kill("offset+1", [1, 2, 3], [5]))
    assert assert_flips(one, lost, "killed after processing message 3 before its commit, offset+1: lost") == ([], [4])


@flips(f.runner_kill_vs_exception)
def test_runner_kill_vs_exception() -> None:
    clean = _result("runner, handler raises", [1, 2, 3, 4, 5], 5)
    a = f.runner_kill_vs_exception(clean, _kill("runner", [1, 2, 3], [1, 2, 3, 4, 5]))
    b = f.runner_kill_vs_exception(clean, _kill("runner", [1, 2, 3], [4, 5]))
    assert assert_flips(a, b) == (True, False)


def _line(text: str) -> str:
    return f"123 [group-coordinator] INFO GroupMetadataManager - [GroupCoordinator id=1] {text}"


def _case(lines: list[str], handled: list[int], commits: list[str]) -> MaxPollCase:
    c = MaxPollCase(16, 0.25, 2000, 6000, 4)
    c.broker_lines = lines
    c.log_read = True
    c.handled = [(o, 0.0) for o in handled]
    c.commits = [(0.0, x) for x in commits]
    return c


STABLE1 = _line("Stabilized group g generation 1 with 1 members.")
STABLE3 = _line("Stabilized group g generation 3 with 1 members.")
LEAVE1 = _line("Preparing to rebalance group g in state PreparingRebalance with old generation 1 "
               "(__consumer_offsets-0) (reason: explicit `LeaveGroup` request for (m) members.).")
EXPIRE1 = _line("Preparing to rebalance group g in state PreparingRebalance with old generation 1 "
                "(reason: removing member m on heartbeat expiration.)")
LEAVE3 = LEAVE1.replace("old generation 1", "old generation 3")


def test_removals_leave_out_the_closing_leave() -> None:
    assert removals([STABLE1, LEAVE1]) == []                       # the close at the end
    assert removals([STABLE1, LEAVE1, STABLE3, LEAVE3]) == [(1, "LeaveGroup")]
    assert removals([STABLE1, EXPIRE1, STABLE3]) == [(1, "session timeout")]


@flips(f.max_poll_removed)
def test_max_poll_removed() -> None:
    kept = _case([STABLE1, LEAVE1], [0, 1, 2, 3], ["ok"])
    left = _case([STABLE1, LEAVE1, STABLE3, LEAVE3], [0, 1, 2, 3], ["ok"])
    expired = _case([STABLE1, EXPIRE1, STABLE3], [0, 1, 2, 3], ["ok"])
    assert assert_flips(f.max_poll_removed([kept, kept]), f.max_poll_removed([left, left])) == (
        "not removed", "by LeaveGroup")
    assert f.max_poll_removed([expired]).value == "by session timeout"
    unread = _case([], [0], ["ok"])
    unread.log_read = False
    assert f.max_poll_removed([unread]).value == "not read (no Kafka broker log)"
    assert f.max_poll_removed([kept, left]).value == (
        "differs between repeats: ['by LeaveGroup', 'not removed']")


@flips(f.max_poll_duplicates)
def test_max_poll_duplicates() -> None:
    once = _case([], [0, 1, 2, 3], ["ok"])
    twice = _case([], [0, 1, 2, 3, 0, 1], ["CommitFailedError"])
    assert assert_flips(f.max_poll_duplicates([once, once]), f.max_poll_duplicates([twice, once])) == (
        "0 of 2", "1 of 2")


@flips(f.max_poll_commit_errors)
def test_max_poll_commit_errors() -> None:
    ok = f.max_poll_commit_errors([_case([], [0], ["ok", "ok"])])
    failed = f.max_poll_commit_errors([_case([], [0], ["ok"]), _case([], [0], ["CommitFailedError", "ok"])])
    assert assert_flips(ok, failed) == ([], ["CommitFailedError"])


@flips(f.max_poll_contrast)
def test_max_poll_contrast() -> None:
    def timed(lines: list[str], batch_s: float) -> MaxPollCase:
        c = _case(lines, [0, 1], ["ok"])
        c.batches = [(0.0, batch_s, 2)]
        return c

    short, long = timed([STABLE1, LEAVE1], 0.5), timed([STABLE1, LEAVE1, STABLE3, LEAVE3], 4.0)
    long_kept = timed([STABLE1, LEAVE1], 4.0)
    assert assert_flips(f.max_poll_contrast([short], [long]), f.max_poll_contrast([short], [long_kept])) == (
        True, False)
    unread = timed([], 4.0)
    unread.log_read = False  # a broker whose log is not ours: not read, rather than False
    assert f.max_poll_contrast([short], [unread]).value == "not read (no Kafka broker log)"


@flips(f.max_poll_progress)
def test_max_poll_progress() -> None:
    done, stuck = _case([], [0, 1, 2, 3], ["ok"]), _case([], [0, 1, 2, 3, 0], ["CommitFailedError"])
    done.committed_end, stuck.committed_end = 4, None
    assert assert_flips(f.max_poll_progress([done, done]), f.max_poll_progress([done, stuck])) == (
        "2 of 2", "1 of 2")
