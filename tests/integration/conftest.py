"""Integration fixtures: one embedded Kafka per test session (rebalance delay 0), uuid names.

Every test under this folder carries the ``integration`` marker (added below by path: a
``pytestmark`` in a conftest.py has no effect), so ``-m integration`` / ``-m "not
integration"`` select by folder.

Set ``KAFKA_BOOTSTRAP_SERVERS`` to run the integration tests against an external cluster
instead (tests that need a configurable or restartable broker then skip).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from offsetlab.brokers import BrokerHandle, start_broker

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before the -m deselection reads the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every collected test that lives under this folder ``integration``.

    The hook sees the whole session's items (``pytest tests`` collects unit tests too),
    hence the path check."""
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


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
