"""E05/E06 scenario modules on the session's embedded Kafka (the notebooks under nbval are the
main check; these keep the modules honest on their own)."""

from __future__ import annotations

from pathlib import Path

import pytest
from offsetlab.brokers import BrokerHandle
from offsetlab.bus import Backoff, MainTopicRetry, RetryTopicRetry
from offsetlab.lab.experiments import e05_main_topic_retry as e05
from offsetlab.lab.experiments import e06_retry_topic as e06
from offsetlab.lab.experiments import outage

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_fail03_raw_variants(kafka_broker: BrokerHandle) -> None:
    runs = e05.run_variants(kafka_broker, {
        "transient": e05.Fail03(failing={2: 2}),
        "no re-produce": e05.Fail03(failing={2: 1}, reproduce=False),
        "crash, offset": e05.Fail03(failing={2: 6}, on_exhausted="crash", commit="offset"),
    })
    t = runs["transient"]
    assert e05.attempts(t) == {0: 1, 1: 1, 2: 3, 3: 1, 4: 1}
    assert e05.processing_order(t) == [0, 1, 3, 4, 2]
    assert t.committed == t.end_offset == 7
    assert e05.outcome(runs["no re-produce"])["lost"] == [2]
    crash = runs["crash, offset"]
    crashed = [d.offset for d in crash.deliveries if d.outcome == "crash"]
    assert crash.restarts == 1 and crash.first_after_restart == [crashed[0] - 1]
    assert e05.outcome(crash)["duplicated"] == [2]
    assert crash.committed == crash.end_offset - 1


def test_fail03_bus_main_topic_dead_letters_after_max_retries(kafka_broker: BrokerHandle) -> None:
    run = e05.run_fail03_bus(kafka_broker, MainTopicRetry(max_retries=2), failing={2: None})
    assert run.finished
    assert run.attempts() == {0: 1, 1: 1, 2: 3, 3: 1, 4: 1}
    assert [(seq, p.attempt, p.original_offset) for seq, p in run.dead_letters] == [(2, 3, 2)]
    assert run.outcome()["committed == end of topic"] is True


def test_retry_topic_raw_copies_carry_provenance(kafka_broker: BrokerHandle) -> None:
    run = e06.run_retry_topic(kafka_broker, failing={1: 1, 3: None}, max_retries=2)
    assert run.finished
    assert run.attempts() == {0: 1, 1: 2, 2: 1, 3: 3, 4: 1}
    retry = [(c.seq, c.attempt, c.original_offset) for c in run.copies if c.topic == "retry"]
    assert sorted(retry) == [(1, 2, 1), (3, 2, 3), (3, 3, 3)]
    assert [(c.seq, c.attempt) for c in run.copies if c.topic == "dlt"] == [(3, 3)]
    assert run.committed == run.end_offsets


def test_outage_retrier_waits_for_the_dependency(kafka_broker: BrokerHandle) -> None:
    backoff = Backoff(initial_s=0.3)
    config = outage.OutageConfig(duration_s=3.0, rate_per_s=10.0, keys=2, dependent_every=2,
                                 outage_start_s=0.5, outage_s=1.5)
    with outage.Dependency() as dependency:  # probed over TCP, like the handlers' calls
        pipelines = [
            outage.RawRetryTopicPipeline(kafka_broker, "t-raw-retrier", dependency, backoff=backoff),
            outage.RawRetryTopicPipeline(kafka_broker, "t-move-back", dependency, backoff=backoff,
                                         mode="move-back"),
            outage.BusPipeline(kafka_broker, "t-bus-retry", RetryTopicRetry(backoff=backoff)),
        ]
        run = outage.run_outage(kafka_broker, pipelines, dependency, config)
    assert max(len(a) for a in run.deliveries_read["t-raw-retrier"].values()) == 2
    summary = outage.summarize(run)
    assert summary["finished"].all()
    assert summary["lost"].tolist() == [0, 0, 0]
    for lane in ("t-raw-retrier", "t-move-back"):
        assert e06.failed_during_outage(run, lane) == 0
        assert summary.loc[lane, "max_attempts"] == 2
    assert e06.failed_during_outage(run, "t-bus-retry") >= 1
    assert summary.loc["t-bus-retry", "rebalances"] == 0


def test_copy_then_commit_window_kill_duplicates_the_copy(kafka_broker: BrokerHandle,
                                                          tmp_path: Path) -> None:
    from offsetlab.lab.experiments import e05_window

    killed = e05_window.run_window(kafka_broker, "raw", killed=True, folder=tmp_path)
    assert killed.finished and killed.exit_codes == [-9, 0]
    assert killed.copies() == [2, 2] and killed.processed()[2] == 2
