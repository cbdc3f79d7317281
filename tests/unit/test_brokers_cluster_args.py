"""start_broker(nodes=...) refuses what it cannot start, before starting anything."""

from __future__ import annotations

import pytest
from offsetlab.brokers import NotCapable, start_broker
from offsetlab.cli import build_parser


@pytest.mark.parametrize("kind", ["tansu", "testcontainers", "external"])
def test_only_kind_kafka_starts_a_cluster(kind):
    with pytest.raises(NotCapable, match="kind 'kafka'"):
        with start_broker(kind, nodes=3, bootstrap_servers="127.0.0.1:1"):
            pass


def test_a_cluster_has_three_nodes_or_more():
    with pytest.raises(ValueError, match="at least 3"):
        with start_broker("kafka", nodes=2):
            pass
    with pytest.raises(ValueError, match="at least 1"):
        with start_broker("kafka", nodes=0):
            pass


def test_a_cluster_takes_no_port():
    with pytest.raises(ValueError, match="random ports"):
        with start_broker("kafka", nodes=3, port=9092):
            pass


def test_broker_up_takes_nodes():
    args = build_parser().parse_args(["broker", "up", "--kind", "kafka", "--nodes", "3"])
    assert args.nodes == 3
    assert build_parser().parse_args(["broker", "up"]).nodes == 1
