"""The liveness rows on the embedded Kafka, short: a blocked handler and a pause across a
rebalance on KafkaJS and on confluent-kafka under the consumer protocol (KIP-848), side by
side on one broker started with the family's settings (short consumer-protocol sessions,
per-group session timeouts)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from offsetlab.brokers import BrokerHandle, start_broker
from offsetlab.lab.clients import conformance_liveness as cl
from offsetlab.lab.clients import kip848
from offsetlab.lab.raw import unique
from offsetlab.lab.timeline_core import Timeline

#: short clocks: 3 s against 7 s, a 13 s block, a 6 s pause
QUICK = cl.LivenessParams(short_ms=3000, long_ms=7000, block_s=13.0, pause_session_ms=3000,
                          pause_max_poll_ms=5000, pause_s=6.0, per_partition=2)
CLOCKS = {"session timeout", "max poll interval", "not removed"}


@pytest.fixture(scope="module")
def liveness_broker() -> Iterator[BrokerHandle]:
    with start_broker("kafka", settings=cl.BROKER_SETTINGS) as broker:
        yield broker


def test_a_group_gets_its_own_consumer_session(liveness_broker: BrokerHandle) -> None:
    group = unique("kip848-group")
    kip848.set_group_session(liveness_broker, group, 3000, heartbeat_interval_ms=500)
    config = kip848.group_config(liveness_broker, group)
    assert config["consumer.session.timeout.ms"] == "3000"
    assert config["consumer.heartbeat.interval.ms"] == "500"


def test_blocked_handler_and_paused_rebalance(liveness_broker: BrokerHandle, tmp_path: Path) -> None:
    cells = cl.run_family(liveness_broker, QUICK, [("kafkajs", "classic"), ("confluent-kafka", "consumer")],
                          timeline=Timeline(), log_dir=tmp_path,
                          behaviours=["sleep_evicted_by_session_first", "pause_survives_rebalance"])
    by = {(c.behaviour, c.client, c.group_protocol): c for c in cells}
    assert len(by) == 4
    for proto_client in (("kafkajs", "classic"), ("confluent-kafka", "consumer")):
        sleep = by[("sleep_evicted_by_session_first", *proto_client)]
        assert sleep.value in CLOCKS, sleep.evidence   # a removal line at a time no clock explains fails
        assert "block" in sleep.evidence
        paused = by[("pause_survives_rebalance", *proto_client)]
        assert paused.value in (True, False), paused.evidence   # None: the run could not tell
