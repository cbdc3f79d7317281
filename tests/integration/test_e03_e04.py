"""E03/E04 scenarios on the session's Kafka: the loss and the off-by-one are real, the runner
loses nothing. (The notebooks run every scenario; these are the load-bearing ones.)"""

from __future__ import annotations

import pytest
from offsetlab.brokers import BrokerHandle
from offsetlab.lab.experiments import e03_batch_failure as e03
from offsetlab.lab.experiments import e04_manual_commit as e04

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_committing_past_a_failed_message_loses_it(kafka_broker: BrokerHandle) -> None:
    r = e03.run_raw_commit_past(kafka_broker, n_messages=5, fail_message=3)
    assert r.lost() == [3]
    assert r.restart_delivered == ()
    assert r.committed == {0: 5}


def test_runner_with_the_seeds_handler_seeks_back_to_the_gap(kafka_broker: BrokerHandle) -> None:
    r = e03.run_runner(kafka_broker, n_messages=5, fail_message=3, stop_at_failure=False)
    assert r.lost() == []
    assert sorted(set(r.flaky.processed)) == [1, 2, 3, 4, 5]
    failed = next(a for a in r.attempts if a.failed)
    assert failed.committed == {0: 2}  # the offset of message 3: resume there
    assert r.committed == {0: 5}


def test_a_permanent_failure_stalls_only_its_partition(kafka_broker: BrokerHandle) -> None:
    r = e03.run_runner(kafka_broker, fail_message=3, fail_times=None, partitions=3, retry_window_s=1.0)
    (stalled,) = r.stalled_partitions()
    assert stalled == next(m.partition for m in r.messages if m.number == 3)
    assert all(r.committed[p] == end for p, end in r.end_offsets.items() if p != stalled)


def test_committing_offset_rereads_the_last_message_after_a_restart(kafka_broker: BrokerHandle) -> None:
    r = e04.run_raw(kafka_broker, commit="offset", on_failure="skip", n_messages=5, fail_message=2)
    assert r.lost() == [2]
    assert r.restart_delivered == (5,)
    assert r.duplicated() == [5]


def test_runner_crash_restart_loses_nothing(kafka_broker: BrokerHandle) -> None:
    r = e04.run_runner(kafka_broker, n_messages=5, fail_message=2, backoff_s=0.1)
    assert r.lost() == [] and r.duplicated() == []
    assert r.restart_delivered == ()
    assert r.committed == {0: 5}


def test_a_kill_before_the_commit_is_reprocessed_by_the_restart(kafka_broker: BrokerHandle,
                                                                 tmp_path) -> None:  # type: ignore[no-untyped-def]
    from offsetlab.lab.experiments.e04_kill import run_kill

    k = run_kill(kafka_broker, tmp_path, style="offset+1", n_messages=5, kill_after=3)
    assert k.killed_exit == -9
    assert k.killed_processed == [1, 2, 3]
    assert k.reprocessed() == [3] and k.lost() == []


def test_a_batch_longer_than_max_poll_interval_gets_the_member_removed(kafka_broker: BrokerHandle) -> None:
    from offsetlab.lab.experiments.e04_max_poll import removals, run_case

    long = run_case(kafka_broker, max_poll_records=8, handler_s=0.25, max_poll_interval_ms=1000,
                    n_messages=8, budget_s=6.0)
    assert long.log_read and [k for _, k in removals(long.broker_lines)][:1] == ["LeaveGroup"]
    assert long.duplicates() > 0
    assert any(c == "CommitFailedError" for _, c in long.commits)
