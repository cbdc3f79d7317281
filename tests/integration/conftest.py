"""Integration fixtures: one embedded Kafka per test session (rebalance delay 0), uuid names.

Set ``KAFKA_BOOTSTRAP_SERVERS`` to run the integration tests against an external cluster
instead (tests that need a configurable or restartable broker then skip).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from offsetlab.brokers import BrokerHandle, start_broker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[BrokerHandle]:
    """Embedded Apache Kafka for the whole session, initial rebalance delay 0."""
    with start_broker("kafka", settings={"group.initial.rebalance.delay.ms": 0}) as broker:
        yield broker


@pytest.fixture(scope="session")
def tansu_broker() -> Iterator[BrokerHandle]:
    with start_broker("tansu") as broker:
        yield broker


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names."""
    return uuid.uuid4().hex[:10]
