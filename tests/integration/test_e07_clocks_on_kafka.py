"""E07 part 3 on the embedded Kafka: the broker's log names the clock that removed a worker
whose handler blocks (the parser holds to Kafka 4.1.1's group-coordinator lines), and the
wall-clock times in that log line up with the client's."""

from __future__ import annotations

import pytest
from offsetlab.brokers import BrokerHandle
from offsetlab.lab.experiments import e07_findings as found
from offsetlab.lab.experiments.e07_clocks import ClockCase, run_clock_case

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]


def test_a_sleeping_handler_is_removed_by_leave_group_at_its_max_poll_interval(
        kafka_broker: BrokerHandle) -> None:
    case = ClockCase(session_timeout_ms=3000, max_poll_interval_ms=6000, sleep_s=9.0,
                     heartbeat_interval_ms=500)
    run = run_clock_case(kafka_broker, case)
    assert run.errors == {}
    kinds = [e.kind for e in run.events]
    assert "joined" in kinds and all(e.at is not None for e in run.events)  # wall-clock times
    removed = found.removal(run)
    assert removed is not None and removed.kind == "leave_group"
    assert removed.reason == "not provided"            # kafka-python 3.0.12 gives no reason
    assert 5.0 <= found.removal_after_s(run) <= 8.0     # its max poll interval, not 3 s
    assert found.removed_by(case.name, [run]).value == "max poll interval"
