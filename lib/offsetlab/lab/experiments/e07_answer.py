"""E07's answer to the seed's question, chosen from its findings, beside the finders that
make them (:mod:`offsetlab.lab.answers` asks it: ``QUESTIONS["07_pause_on_dependency"]``).

A finding the answer needs that was not recorded makes its clause say ``not measured``
(:func:`offsetlab.lab.answers.not_measured`), as every other experiment's answer does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from offsetlab.lab.answers import Findings

__all__ = ["RESTS_ON", "answer"]

PAUSERS = ("raw-pause", "bus-depends-on")
REBALANCED = "{}: rebalances during the outage >= 1"
SLEEP_REBALANCED = "raw-sleep: rebalances during the outage >= 1"
SLEEP_TWICE = "raw-sleep: messages processed twice >= 1"
#: the sleeping worker's remover, session shorter / max poll shorter (finder e07_findings.removed_by)
SLEEP_BY = ("sleeping, session {} < max poll {}: worker removed by",
            "sleeping, session {} > max poll {}: worker removed by")
KEPT = "sleeping, session {} < max poll {}: broker kept the sleeping worker past its session timeout"
HELD = "{} + rebalance: pause held through the rebalance"
#: the seed's own client, from E07's client section (finders of conformance_findings_liveness)
KAFKAJS_BY = "kafkajs, session < max poll: a blocked handler's member removed by"
KAFKAJS_PAUSE = "kafkajs: all partitions paused longer than both clocks, membership kept"
KAFKAJS_ON_ERROR = "kafkajs: paused on a failing dependency, membership kept and nothing lost"

#: the findings the answer rests on (names, or a finder's template)
RESTS_ON = (*(REBALANCED.format(p) for p in PAUSERS), SLEEP_REBALANCED, SLEEP_TWICE, *SLEEP_BY,
            KEPT, *(HELD.format(p) for p in PAUSERS), KAFKAJS_BY, KAFKAJS_PAUSE, KAFKAJS_ON_ERROR)


def _clause(f: Findings, topic: str, decide: Callable[[Findings], str]) -> str:
    from offsetlab.lab.answers import Missing, not_measured

    try:
        return decide(f)
    except Missing as m:
        return f"{topic}: {not_measured(m.name)}"


def _sleep(f: Findings) -> str:
    if not f.true(SLEEP_REBALANCED):
        return "sleeping in the handler did not cost a rebalance in this run"
    if f.true(SLEEP_TWICE):
        return "sleeping in the handler instead lost the group: a rebalance, messages processed twice"
    return "sleeping in the handler instead cost a rebalance, nothing processed twice"


def _clocks(f: Findings) -> str:
    by = [str(f[name]) for name in SLEEP_BY]
    if by != ["max poll interval", "max poll interval"]:
        return (f"the broker removed the sleeping worker by {by[0]} (session shorter) and by "
                f"{by[1]} (max poll shorter)")
    kept = (", the broker kept it past its session timeout: heartbeats went on while it slept"
            if f.true(KEPT) else "")
    return ("the broker removed the sleeping kafka-python worker at its max poll interval in both "
            f"settings{kept}")


def _held(f: Findings) -> str:
    untested = [p for p in PAUSERS if str(f[HELD.format(p)]).startswith("not tested")]
    if untested:
        return f"a rebalance while paused was not tested ({', '.join(untested)})"
    broken = [p for p in PAUSERS if not f.true(HELD.format(p))]
    if broken:
        return f"a rebalance undid the pause ({', '.join(broken)})"
    return "the pause held through a rebalance (raw kafka-python and the bus)"


def _kafkajs(f: Findings) -> str:
    paused = ("pause() kept its place" if f.true(KAFKAJS_PAUSE)
              else "pause() did not keep its place")
    on_error = ("so did its docs' pause-then-throw pattern" if f.true(KAFKAJS_ON_ERROR)
                else "its docs' pause-then-throw pattern lost it")
    return (f"on KafkaJS, the seed's client, the broker removed a blocked handler's member by "
            f"{f[KAFKAJS_BY]} (session shorter than max poll), {paused}, {on_error}")


def answer(f: Findings) -> str:
    moved = [p for p in PAUSERS if f.true(REBALANCED.format(p))]
    if moved:
        head = f"no: a paused consumer ({', '.join(moved)}) was rebalanced during the outage"
    else:
        head = ("yes: a consumer that pauses and keeps polling kept its place through an outage "
                "longer than the session timeout and max poll interval")
    return "; ".join((head, _clause(f, "sleeping", _sleep), _clause(f, "clocks", _clocks),
                      _clause(f, "rebalance while paused", _held), _clause(f, "KafkaJS", _kafkajs)))
