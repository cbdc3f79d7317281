"""E04's section "The same on KafkaJS and confluent-kafka": the seed's fail02 on every client.

Message style (KafkaJS ``eachMessage``), a commit after each message in three modes
(``message_offset``: ``message.offset``, the seed's first try; ``offset_plus_one``; and
``idiomatic``: the client's own, KafkaJS's resolve-and-auto-commit, kafka-python's
``commit()``, confluent-kafka's ``commit(message)``); message ``fail_value`` fails once and is
skipped; A stops cleanly once it handled the last message, B restarts in the same group and
reads to the end. The driver is :func:`offsetlab.lab.experiments.e03_clients.run_cases`.
"""

from __future__ import annotations

from collections.abc import Sequence

from offsetlab.lab.experiments.e03_clients import Case, CaseRun

__all__ = ["MODES", "fail02_cases", "by_column"]

MODES = ("message_offset", "offset_plus_one", "idiomatic")


def fail02_cases(columns: Sequence[tuple[str, str]], *, messages: int = 5,
                 fail_value: str = "2", modes: Sequence[str] = MODES) -> list[Case]:
    return [Case(client=client, group_protocol=proto, name=mode, style="message", commit=mode,
                 on_fail="skip", fail_value=fail_value, messages=messages, a_done="last")
            for client, proto in columns for mode in modes]


def by_column(runs: Sequence[CaseRun]) -> dict[str, list[CaseRun]]:
    """The runs grouped by client column (first-seen order)."""
    out: dict[str, list[CaseRun]] = {}
    for r in runs:
        out.setdefault(r.column, []).append(r)
    return out
