"""offsetlab.bus.testing without a broker: the memory driver's time, the drivers' timeout
errors, and the readers' lazy kafka-python import (the readers themselves run against a
broker in tests/integration/test_kafka_bus.py)."""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from typing import ClassVar

import pytest
from offsetlab.bus import testing
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.memory import InMemoryBus
from offsetlab.bus.retry import Backoff, InPlaceRetry
from offsetlab.bus.testing import KafkaDriver, MemoryDriver


@dataclass(frozen=True, kw_only=True)
class Msg(Event):
    topic: ClassVar[str] = "msgs"
    n: int


def _driver() -> MemoryDriver:
    return MemoryDriver(lambda clock: InMemoryBus(EventRegistry([Msg]), clock=clock))


def test_memory_idle_handles_what_falls_due_and_ends_at_its_end() -> None:
    driver = _driver()
    calls: list[float] = []

    def handler(event: Event) -> None:
        calls.append(driver.clock())
        if len(calls) < 3:
            raise ConnectionError("down")

    backoff = Backoff(initial_s=1.0, multiplier=1.0, max_s=1.0)
    driver.bus.subscribe(Msg, handler, group="g",
                         retry=InPlaceRetry(max_retries=5, backoff=backoff)).run(timeout=5)
    start = driver.clock()
    driver.bus.publish(Msg(n=1))
    driver.idle(10.0)
    assert len(calls) == 3 and calls[-1] - start == pytest.approx(2.0)
    assert driver.clock() - start == pytest.approx(10.0)


def test_memory_wait_until_raises_its_timeout_error_when_the_bus_is_idle() -> None:
    driver = _driver()
    with pytest.raises(TimeoutError, match="waited 5 s .simulated. for nothing"):
        driver.wait_until(lambda: False, timeout_s=5, what="nothing")

    class Asserting(MemoryDriver):
        timeout_error = AssertionError

    strict = Asserting(lambda clock: InMemoryBus(EventRegistry([Msg]), clock=clock))
    with pytest.raises(AssertionError, match="the bus is idle"):
        strict.wait_until(lambda: False, timeout_s=5, what="nothing")


def test_kafka_driver_names_and_waits_without_a_broker() -> None:
    driver = KafkaDriver(bus=None, bootstrap_servers="127.0.0.1:1", run_id="r1",  # type: ignore[arg-type]
                         poll_s=0.01)
    assert driver.name("g") == "g-r1" and driver.kind == "kafka"
    with pytest.raises(TimeoutError, match="for the impossible"):
        driver.wait_until(lambda: False, timeout_s=0.05, what="the impossible")

    class Asserting(KafkaDriver):
        timeout_error = AssertionError

    strict = Asserting(bus=None, bootstrap_servers="127.0.0.1:1", poll_s=0.01)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="for the impossible"):
        strict.wait_until(lambda: False, timeout_s=0.05, what="the impossible")


def test_kafka_python_is_imported_inside_the_readers_only() -> None:
    tree = ast.parse(inspect.getsource(testing))
    top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if m.split(".")[0] == "kafka"], names
