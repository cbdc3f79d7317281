"""The shared bus scenarios (tests/scenarios) on KafkaBus against embedded Kafka.

The same bodies run on the in-memory bus in ``tests/unit/test_bus_scenarios_memory.py``;
here time is real and every run uses its own uuid topic prefix and group names, on each
client library (``client``: kafka-python and confluent-kafka).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from offsetlab.brokers import BrokerHandle
from offsetlab.bus.kafka_bus import KafkaBus, KafkaBusConfig
from scenarios.backups_scenarios import (
    backups_story,
    scenario_backups_bad_data_dead_letters,
    scenario_backups_dependency_down_pauses_then_recovers,
    scenario_backups_happy_path,
    scenario_backups_slow_dependency_retried_in_place,
)
from scenarios.bus_scenarios import (
    ALL_STRATEGY_SCENARIOS,
    fast_strategies,
    scenario_exhausted_retries_dead_letter,
    scenario_retry_copies_belong_to_their_group,
)
from scenarios.drivers import KafkaDriver, MemoryDriver
from scenarios.events import scenario_registry

pytestmark = pytest.mark.integration

STRATEGIES = fast_strategies(max_retries=2)
CLIENTS = ("kafka-python", "confluent-kafka")


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    """The client library under the bus."""
    return str(request.param)


@pytest.fixture
def kafka_driver(kafka_broker: BrokerHandle, unique: str, client: str) -> Iterator[KafkaDriver]:
    registry = scenario_registry(topic_prefix=f"scn-{unique}.")
    config = KafkaBusConfig(bootstrap_servers=kafka_broker.bootstrap_servers,
                            keep_activity=True, name=f"scn-{unique}", client=client)
    bus = KafkaBus(registry, config)
    try:
        yield KafkaDriver(bus, bootstrap_servers=kafka_broker.bootstrap_servers, run_id=unique)
    finally:
        bus.close()


@pytest.mark.parametrize("strategy_name", sorted(STRATEGIES))
@pytest.mark.parametrize("scenario", ALL_STRATEGY_SCENARIOS, ids=lambda f: f.__name__)
def test_scenario_on_kafka_bus(kafka_driver: KafkaDriver, scenario, strategy_name: str) -> None:
    scenario(kafka_driver, STRATEGIES[strategy_name])


def test_retry_copies_belong_to_their_group_on_kafka_bus(kafka_driver: KafkaDriver) -> None:
    scenario_retry_copies_belong_to_their_group(kafka_driver)


@pytest.mark.parametrize("strategy_name", sorted(STRATEGIES))
def test_no_retries_means_one_delivery_then_dead_letter(kafka_driver: KafkaDriver,
                                                        strategy_name: str) -> None:
    strategy = fast_strategies(max_retries=0)[strategy_name]
    scenario_exhausted_retries_dead_letter(kafka_driver, strategy)


BACKUPS_SCENARIOS = (
    scenario_backups_happy_path,
    scenario_backups_dependency_down_pauses_then_recovers,
    scenario_backups_bad_data_dead_letters,
    scenario_backups_slow_dependency_retried_in_place,
)


@pytest.mark.parametrize("scenario", BACKUPS_SCENARIOS, ids=lambda f: f.__name__)
def test_backups_scenario_on_kafka_bus(kafka_driver: KafkaDriver, scenario) -> None:
    scenario(kafka_driver)


def test_backups_story_ends_as_on_the_memory_bus(kafka_driver: KafkaDriver) -> None:
    """E08's claim: the same story on both buses ends in the same state."""
    memory = MemoryDriver()
    with memory.bus:
        expected = backups_story(memory)
    assert backups_story(kafka_driver) == expected
