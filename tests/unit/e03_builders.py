"""A hand-made E03 :class:`ScenarioResult` for the unit tests of its arithmetic and finders."""

from __future__ import annotations

from offsetlab.lab.experiments.e03_scenario import Attempt, Flaky, Message, ScenarioResult
from offsetlab.lab.timeline import Timeline


def scenario_result(partitions: list[int], processed: list[int], committed: dict[int, int], *,
                    attempts: list[Attempt] | None = None, restart: tuple[int, ...] | None = None,
                    fail_number: int = 3) -> ScenarioResult:
    """Message ``n`` (1-based) on ``partitions[n - 1]`` at the next offset of its partition;
    ``processed`` the numbers the handler processed; ``committed`` per partition."""
    offsets: dict[int, int] = {}
    messages = []
    for number, p in enumerate(partitions, start=1):
        messages.append(Message(number, f"k{number}", p, offsets.get(p, 0)))
        offsets[p] = offsets.get(p, 0) + 1
    flaky = Flaky(fail_number=fail_number)
    flaky.processed = list(processed)
    return ScenarioResult(name="t", topic="t", group="g", messages=messages, flaky=flaky,
                          attempts=attempts or [], committed=committed, end_offsets=offsets,
                          timeline=Timeline(), restart_delivered=restart)
