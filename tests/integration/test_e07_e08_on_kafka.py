"""E07 and E08 scenario modules on the embedded Kafka: the notebooks' claims, as tests.

E07: sleeping in the handler past ``max_poll_interval_ms`` costs the group (rebalances,
messages processed twice, a refused commit); pausing and polling on costs nothing.
E08: the backup story ends in the same state on the Kafka bus as on the in-memory bus.
"""

from __future__ import annotations

import pytest
from offsetlab.brokers import BrokerHandle
from offsetlab.lab.experiments import e07_pause as e07
from offsetlab.lab.experiments import e08_end_to_end as e08

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def test_e07_sleeping_loses_the_group_pausing_keeps_it(kafka_broker: BrokerHandle) -> None:
    params = e07.PauseParams()
    sleep, pause = e07.run_side_by_side(kafka_broker, params, e07.run_raw_sleep,
                                        e07.run_raw_pause)
    s, p = e07.summarize(sleep), e07.summarize(pause)
    assert s["rebalances"] >= 1 and s["fewest_members"] == 1
    assert s["duplicates"] >= 1 and s["commit_errors"] == ["CommitFailedError"]
    assert p["rebalances"] == 0 and p["fewest_members"] == 2
    assert p["duplicates"] == 0 and p["commit_errors"] == []
    assert p["longest_pause_s"] > params.max_poll_interval_ms / 1000
    for row in (s, p):
        assert row["lost"] == 0 and row["committed_at_end"] and row["errors"] == []


def test_e07_bus_depends_on_pauses_without_a_rebalance(kafka_broker: BrokerHandle) -> None:
    params = e07.PauseParams()
    [bus] = e07.run_side_by_side(kafka_broker, params, e07.run_bus_depends_on)
    b = e07.summarize(bus)
    assert b["rebalances"] == 0 and b["duplicates"] == 0 and b["lost"] == 0
    assert b["max_attempts"] == params.failure_threshold + 1
    assert b["committed_at_end"]


def test_e08_kafka_bus_ends_like_the_memory_bus(kafka_broker: BrokerHandle) -> None:
    params = e08.StoryParams()
    kafka = e08.run_on_kafka(kafka_broker, params)
    memory = e08.run_on_memory(params)
    assert kafka.final == memory.final
    assert e08.summary(kafka)["calls_while_open"] == 0
