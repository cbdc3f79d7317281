"""E09's answer (the conformance matrix): do the clients behave the same? Chosen from the
findings notebook 09 prints (:func:`offsetlab.lab.clients.conformance.matrix_findings`), whose
names carry the column; :mod:`offsetlab.lab.answers` asks it: ``QUESTIONS["09_client_conformance"]``.

The head says ``no`` when any row compared below came out differently for two columns, and
names those rows; each clause then says which columns did what. A column that did not run
(KafkaJS without Node) leaves its findings missing: the clauses that need them say ``not
measured``, as every other experiment's answer does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from offsetlab.lab.answers import Findings

__all__ = ["COLUMNS", "RESTS_ON", "answer"]

#: the columns' names in the findings (``conformance.column_name``)
COLUMNS = ("kafka-python", "kafkajs", "confluent-kafka", "confluent-kafka (KIP-848)")
BY_SESSION = "blocked handler, session < max poll: columns whose member the session timeout removed"
PAUSE_ERROR = "{}: paused on a failing dependency, membership kept and nothing lost"
STATIC = "{}: a static member's restart does not wait out the dead member's session"
MESSAGE_OFFSET = "{}: committing message.offset makes a restarted member handle messages again"
IDIOMATIC = "{}: the idiomatic commit makes a restarted member handle nothing again"
FIRST_HOLD = ("{}: the first member of a new group holds partitions only after the initial "
              "rebalance delay")
#: the threshold is a parameter of the notebook: ``{}`` stands for it
DOWN = "{}: a down broker is reported within {{}} s"

_PER_COLUMN = (PAUSE_ERROR, STATIC, MESSAGE_OFFSET, IDIOMATIC, FIRST_HOLD, DOWN)
#: the findings the answer rests on (names, or a finder's template with the column filled in)
RESTS_ON = (BY_SESSION, *(t.format(c) for t in _PER_COLUMN for c in COLUMNS))


def _values(f: Findings, template: str) -> dict[str, Any]:
    return {c: f[template.format(c)] for c in COLUMNS}


def _true(f: Findings, template: str) -> list[str]:
    return [c for c in COLUMNS if f.true(template.format(c))]


def _some(cols: Sequence[str]) -> str:
    if not cols:
        return "none"
    return "every client" if len(cols) == len(COLUMNS) else ", ".join(cols)


def _blocked(f: Findings) -> tuple[str, bool]:
    cols = [str(c) for c in (f[BY_SESSION] or [])]
    return (f"a handler that blocks had its member removed by the session timeout on "
            f"{_some(cols)} (session shorter than max poll)", 0 < len(cols) < len(COLUMNS))


def _pause_error(f: Findings) -> tuple[str, bool]:
    _values(f, PAUSE_ERROR)
    kept = _true(f, PAUSE_ERROR)
    lost = [c for c in COLUMNS if c not in kept]
    return (f"pausing on a failing dependency (the client's documented way) kept the member's "
            f"place on {_some(kept)}" + (f", not on {', '.join(lost)}" if lost else ""),
            bool(lost) and bool(kept))


def _static(f: Findings) -> tuple[str, bool]:
    values = _values(f, STATIC)
    unsupported = [c for c, v in values.items() if v == "unsupported"]
    fast = _true(f, STATIC)
    slow = [c for c in COLUMNS if c not in fast and c not in unsupported]
    text = f"a static member's restart skipped the dead member's session on {_some(fast)}"
    if slow:
        text += f", not on {', '.join(slow)}"
    if unsupported:
        text += f" ({', '.join(unsupported)}: no static membership)"
    return text, len({str(v) for v in values.values()}) > 1


def _commits(f: Findings) -> tuple[str, bool]:
    _values(f, MESSAGE_OFFSET)
    _values(f, IDIOMATIC)
    again, clean = _true(f, MESSAGE_OFFSET), _true(f, IDIOMATIC)
    return (f"committing message.offset made a restarted member handle messages again on "
            f"{_some(again)}; the idiomatic commit (offset + 1) re-read nothing on {_some(clean)}",
            0 < len(again) < len(COLUMNS) or 0 < len(clean) < len(COLUMNS))


def _first_hold(f: Findings) -> tuple[str, bool]:
    _values(f, FIRST_HOLD)
    held = _true(f, FIRST_HOLD)
    return (f"the initial rebalance delay held back a new group's first member on {_some(held)}",
            0 < len(held) < len(COLUMNS))


def _down(f: Findings) -> tuple[str, bool]:
    _values(f, DOWN)
    prompt = _true(f, DOWN)
    late = [c for c in COLUMNS if c not in prompt]
    return (f"a broker down at start was reported within the threshold by {_some(prompt)}"
            + (f", later by {', '.join(late)}" if late else ""), bool(prompt) and bool(late))


#: (the row's short name for the head, its clause)
_CLAUSES: tuple[tuple[str, Callable[[Findings], tuple[str, bool]]], ...] = (
    ("a blocked handler", _blocked), ("pausing on a failing dependency", _pause_error),
    ("static membership", _static), ("commits", _commits),
    ("the initial rebalance delay", _first_hold), ("a down broker", _down))


def answer(f: Findings) -> str:
    from offsetlab.lab.answers import Missing, not_measured

    texts, differ, missing = [], [], []
    for topic, clause in _CLAUSES:
        try:
            text, differs = clause(f)
        except Missing as m:
            missing.append(m)
            texts.append(f"{topic}: {not_measured(m.name)}")
            continue
        texts.append(text)
        if differs:
            differ.append(topic)
    if len(missing) == len(_CLAUSES):
        raise missing[0]
    head = (f"no: they differ on {', '.join(differ)}" if differ else
            "yes: every row compared came out the same on every client")
    return "; ".join((head, *texts))
