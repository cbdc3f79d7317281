"""E03/E04 result arithmetic without a broker: what counts as lost, duplicated, stalled."""

from __future__ import annotations

import pytest
from e03_builders import scenario_result
from offsetlab.lab.experiments.e03_batch_failure import (
    Attempt,
    Flaky,
    ProcessingFailed,
    ScenarioResult,
)
from offsetlab.lab.experiments.e04_manual_commit import mode_name, per_message_handler


def _result(partitions: list[int], processed: list[int], committed: dict[int, int],
            attempts: list[Attempt] | None = None) -> ScenarioResult:
    return scenario_result(partitions, processed, committed, attempts=attempts, fail_number=0)


def test_flaky_fails_the_chosen_message_the_chosen_number_of_times() -> None:
    flaky = Flaky(fail_number=3, fail_times=2)
    for _ in range(2):
        with pytest.raises(ProcessingFailed):
            flaky(3)
    flaky(3)
    flaky(4)
    assert flaky.processed == [3, 4]
    assert flaky.attempts == {3: 3, 4: 1}


def test_flaky_permanent_failure_never_succeeds() -> None:
    flaky = Flaky(fail_number=1, fail_times=None)
    for _ in range(5):
        with pytest.raises(ProcessingFailed):
            flaky(1)
    assert flaky.processed == []


def test_a_message_behind_the_committed_position_and_never_processed_is_lost() -> None:
    r = _result([0] * 5, processed=[1, 2, 4, 5], committed={0: 5})
    assert r.lost() == [3]
    assert r.stalled_partitions() == []


def test_a_message_at_or_after_the_position_is_waiting_not_lost() -> None:
    r = _result([0, 2, 1, 1, 0], processed=[1, 2, 5], committed={0: 2, 2: 1})
    assert r.lost() == []
    assert r.stalled_partitions() == [1]
    assert r.stuck_messages() == [3, 4]
    assert r.next_message(r.committed) == "p0: 2 -> end, p1: none -> msg 3, p2: 1 -> end"


def test_duplicates_and_delivery_counts() -> None:
    attempts = [Attempt(1, "c", (1, 2, 3), (1, 3), (2,), {0: 1}),
                Attempt(2, "c", (2, 3), (2, 3), (), {0: 3})]
    r = _result([0] * 3, processed=[1, 3, 2, 3], committed={0: 3}, attempts=attempts)
    assert r.duplicated() == [3]
    assert r.delivery_counts() == {1: 1, 2: 2, 3: 2}
    assert r.delivered_after_first_failure() == [2, 3]
    assert r.attempts_rows()[0]["committed after"] == "p0: 1 -> msg 2"


def test_per_message_handler_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError, match="commit must be"):
        per_message_handler("offset-1", "skip")  # type: ignore[arg-type]
    assert mode_name("offset", "stop") == "commit offset, stop at the failure"


def test_kill_case_reprocessed_and_lost() -> None:
    from offsetlab.lab.experiments.e04_kill import KillCase

    k = KillCase("offset", 5, 3, killed_processed=[1, 2, 3], restart_processed=[2, 3, 4, 5],
                 committed_at_kill=1)
    assert k.reprocessed() == [2, 3] and k.lost() == []
    assert k.row()["committed at the kill (message it resumes at)"] == 2
    gap = KillCase("offset+1", 5, 3, killed_processed=[1, 2, 3], restart_processed=[5])
    assert gap.reprocessed() == [] and gap.lost() == [4]


def test_max_poll_case_counts_handlings_beyond_the_first() -> None:
    from offsetlab.lab.experiments.e04_max_poll import MaxPollCase

    c = MaxPollCase(4, 0.25, 2000, 6000, 3)
    c.handled = [(0, 0.1), (1, 0.2), (2, 0.3), (0, 1.1), (1, 1.2)]
    c.batches = [(0.0, 0.8, 3), (1.0, 0.5, 2), (2.0, 0.0, 0)]
    assert c.handled_counts() == {0: 2, 1: 2, 2: 1}
    assert c.duplicates() == 2
    assert c.batch_seconds() == [0.8, 0.5]


def test_kill_worker_exits_when_its_orchestrator_goes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The worker never outlives the process that started it: stdin EOF ends it."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "offsetlab.lab.experiments.e04_kill_worker",
                             "--bootstrap-servers", "127.0.0.1:1", "--topic", "t", "--group", "g",
                             "--out", str(tmp_path / "out.txt"), "--mode", "offset+1", "--end", "5"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=20) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
