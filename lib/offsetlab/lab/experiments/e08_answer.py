"""E08's answer to the seed's question, chosen from its findings (:mod:`offsetlab.lab.answers`
asks it: ``QUESTIONS["08_event_bus_end_to_end"]``; moved here from ``answers.py`` unchanged).

A finding the answer needs that was not recorded makes its clause say ``not measured``
(:func:`offsetlab.lab.answers.not_measured`), as every other experiment's answer does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from offsetlab.lab.answers import Findings

__all__ = ["E08_DIFFER", "E08_PENDING", "E08_OPEN_CALLS", "RESTS_ON", "answer"]

E08_DIFFER = "final state fields that differ between the buses"
E08_PENDING = "kafka: events left pending on aggregates"
E08_OPEN_CALLS = "kafka: dependency calls while the breaker was open"
#: the findings the answer rests on
RESTS_ON = (E08_DIFFER, E08_PENDING, E08_OPEN_CALLS)


def _clause(f: Findings, topic: str, decide: Callable[[Findings], str]) -> str:
    from offsetlab.lab.answers import Missing, not_measured

    try:
        return decide(f)
    except Missing as m:
        return f"{topic}: {not_measured(m.name)}"


def answer(f: Findings) -> str:
    head = ("yes: the same service on the in-memory bus and on Kafka ends in the same state"
            if not f[E08_DIFFER] else "no: the in-memory bus and the Kafka bus ended in "
            f"different states ({', '.join(map(str, f[E08_DIFFER]))} differ)")
    return "; ".join((
        head,
        _clause(f, "pending", lambda f: "no event was left pending on an aggregate"
                if not f[E08_PENDING] else f"{f[E08_PENDING]} events were left pending on aggregates"),
        _clause(f, "breaker", lambda f: "on Kafka the open breaker stopped every dependency call"
                if not f[E08_OPEN_CALLS]
                else f"on Kafka {f[E08_OPEN_CALLS]} dependency calls went out while the breaker "
                     "was open")))
