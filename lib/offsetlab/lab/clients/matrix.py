"""The conformance matrix: one :class:`Cell` per (behaviour, client column), written by
notebook 09 to ``conformance.json`` and rendered by the suite's report
(:func:`offsetlab.lab.report_parts.conformance_matrix`).

A cell's ``value`` is computed from a recorded timeline and from what the broker said (its
log, its group state), never from the parameters the scenario chose; ``evidence`` names the
run and the events it rests on (a short text). Only :func:`allowed_missing` cells may say
``unsupported`` or ``n/a``; :func:`check_matrix` enforces it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Cell", "BEHAVIOURS", "COLUMNS", "UNSUPPORTED", "NOT_APPLICABLE", "allowed_missing",
           "check_matrix", "write_conformance", "read_conformance"]

#: the rows, in the order the report shows them
BEHAVIOURS = (
    "first_join_s",
    "run_returns_after_join",
    "join_after_killed_member_s",
    "static_member_rejoin_s",
    "sleep_evicted_by_session_first",
    "sleep_evicted_by_max_poll_first",
    "pause_keeps_membership",
    "pause_on_error_keeps_membership",
    "pause_survives_rebalance",
    "commit_message_offset_rereads",
    "idiomatic_commit_rereads",
    "batch_failure_redelivered",
    "broker_down_at_start",
)
#: the columns: (client, group_protocol)
COLUMNS = (("kafka-python", "classic"), ("kafkajs", "classic"), ("confluent-kafka", "classic"),
           ("confluent-kafka", "consumer"))
UNSUPPORTED = "unsupported"
NOT_APPLICABLE = "n/a"


@dataclass(frozen=True, kw_only=True)
class Cell:
    behaviour: str
    client: str
    group_protocol: str
    broker: str
    value: bool | int | float | str | list[Any] | None
    evidence: str

    def __post_init__(self) -> None:
        if self.behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {self.behaviour!r}")
        if (self.client, self.group_protocol) not in COLUMNS:
            raise ValueError(f"unknown column {(self.client, self.group_protocol)!r}")


def allowed_missing(behaviour: str, client: str, group_protocol: str) -> bool:
    """Whether this cell may be ``unsupported`` / ``n/a``: static membership and the max-poll
    settings on KafkaJS, and rows that do not apply to the consumer protocol."""
    if client == "kafkajs" and behaviour in ("static_member_rejoin_s",
                                             "sleep_evicted_by_max_poll_first"):
        return True
    return group_protocol == "consumer"


def check_matrix(cells: Sequence[Cell], *, broker: str | None = None,
                 columns: Sequence[tuple[str, str]] = COLUMNS) -> list[str]:
    """What is wrong with ``cells`` (empty when nothing): a (behaviour, column) missing or
    given twice, or ``unsupported``/``n/a`` where :func:`allowed_missing` says no. ``columns``:
    the columns that must be there (a machine without Node runs no KafkaJS column)."""
    problems = []
    seen: dict[tuple[str, str, str, str], int] = {}
    for c in cells:
        k = (c.behaviour, c.client, c.group_protocol, c.broker)
        seen[k] = seen.get(k, 0) + 1
        if c.value in (UNSUPPORTED, NOT_APPLICABLE) and not allowed_missing(*k[:3]):
            problems.append(f"{k[:3]} may not be {c.value!r}")
    brokers = {broker} if broker else {c.broker for c in cells}
    for b in brokers:
        for beh in BEHAVIOURS:
            for client, proto in columns:
                n = seen.get((beh, client, proto, b), 0)
                if n != 1:
                    problems.append(f"{(beh, client, proto, b)}: {n} cells")
    return problems


def write_conformance(path: Path | str, cells: Iterable[Cell]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(c) for c in cells], indent=1) + "\n")
    return path


def read_conformance(path: Path | str) -> list[Cell]:
    return [Cell(**d) for d in json.loads(Path(path).read_text())]
