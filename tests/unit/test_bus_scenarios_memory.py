"""The shared bus scenarios (tests/scenarios) on the in-memory bus, for each strategy."""

from __future__ import annotations

import pytest
from scenarios.bus_scenarios import (
    ALL_STRATEGY_SCENARIOS,
    fast_strategies,
    scenario_retry_copies_belong_to_their_group,
)
from scenarios.drivers import MemoryDriver

STRATEGIES = fast_strategies(max_retries=2)


@pytest.mark.parametrize("strategy_name", sorted(STRATEGIES))
@pytest.mark.parametrize("scenario", ALL_STRATEGY_SCENARIOS, ids=lambda f: f.__name__)
def test_scenario_on_memory_bus(scenario, strategy_name: str) -> None:
    driver = MemoryDriver()
    with driver.bus:
        scenario(driver, STRATEGIES[strategy_name])


@pytest.mark.parametrize("max_retries", [0, 1, 5])
def test_seed_counting_holds_for_each_max_retries(max_retries: int) -> None:
    from scenarios.bus_scenarios import scenario_exhausted_retries_dead_letter

    for strategy in fast_strategies(max_retries=max_retries).values():
        driver = MemoryDriver()
        with driver.bus:
            scenario_exhausted_retries_dead_letter(driver, strategy)


def test_retry_copies_belong_to_their_group_on_memory_bus() -> None:
    driver = MemoryDriver()
    with driver.bus:
        scenario_retry_copies_belong_to_their_group(driver)
