"""E08's findings, each computed from the two buses' recorded end states and timelines.

The story (:func:`~offsetlab.lab.experiments.e08_end_to_end.run_story`) runs to its end on
both buses under the same per-step deadline; a step that does not complete is noted in the
end state (``unfinished_steps``), not raised, so the two end states are compared here as
data and a difference prints as ``False`` with the fields that differ."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from offsetlab.lab.findings import Finding, finder

__all__ = ["state_differences", "same_final_state", "end_state", "per_bus"]

SAME = "same final state on both buses"
DIFFER = "final state fields that differ between the buses"


def state_differences(one: Any, other: Any) -> list[str]:
    """The names of the :class:`FinalState` fields whose values differ, sorted."""
    return sorted(f.name for f in fields(one) if getattr(one, f.name) != getattr(other, f.name))


@finder(SAME, DIFFER)
def same_final_state(memory: Any, kafka: Any) -> list[Finding]:
    """Both buses' end states, field by field (statuses, sent, dead letters, breaker history,
    pending events, unfinished steps)."""
    diff = state_differences(memory, kafka)
    return [Finding(SAME, not diff, rule="every FinalState field equal", measured=diff),
            Finding(DIFFER, diff)]


@finder("{}: final statuses", "{}: sent to the backup interface",
        "{}: dead letters (request, error, attempt)", "{}: breaker transitions",
        "{}: events left pending on aggregates", "{}: story steps not completed in time")
def end_state(bus: str, final: Any) -> list[Finding]:
    """One bus's end state, as the story left it."""
    return [Finding(f"{bus}: final statuses", [list(s) for s in final.statuses]),
            Finding(f"{bus}: sent to the backup interface", list(final.sent)),
            Finding(f"{bus}: dead letters (request, error, attempt)",
                    [list(d) for d in final.dead_letters]),
            Finding(f"{bus}: breaker transitions", list(final.breaker_states)),
            Finding(f"{bus}: events left pending on aggregates", final.pending_events),
            Finding(f"{bus}: story steps not completed in time", list(final.unfinished_steps))]


@finder("{}: re-produced retries", "{}: dependency calls while the breaker was open",
        "{}: calls per phase")
def per_bus(bus: str, summary: dict[str, Any]) -> list[Finding]:
    """From one bus's timeline summary (:func:`~offsetlab.lab.experiments.e08_end_to_end.summary`):
    re-produced copies, dependency calls between a breaker ``open`` and the next
    ``half_open``, and calls per dependency phase."""
    return [Finding(f"{bus}: re-produced retries", summary["retries"]),
            Finding(f"{bus}: dependency calls while the breaker was open",
                    summary["calls_while_open"], rule="calls between open and half_open",
                    measured=summary["calls_while_open"]),
            Finding(f"{bus}: calls per phase", summary["calls_per_phase"])]
