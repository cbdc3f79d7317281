"""E02's findings: each one a finder over what :mod:`~offsetlab.lab.experiments.e02_errors`
recorded (a scenario's row of the matrix, its notes, the runner's lifecycle kinds, what was
seen after the broker stopped); no broker here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from offsetlab.lab.experiments.e02_errors import OPERATIONS, milestones
from offsetlab.lab.findings import Finding, finder

__all__ = ["matrix_line", "notes_line", "runner_events", "runner_ended_after_stop"]


@finder("kafka-python / {}", "runner / {}")
def matrix_line(client: str, scenario: str, row: Mapping[str, Any]) -> Finding:
    """A scenario's recorded row of the matrix as one line: per operation what came back
    (``returns <type>``, ``raises <class>``, ``-`` when not reached)."""
    return Finding(f"{client} / {scenario}",
                   " | ".join(f"{op}: {row[op]}" for op in OPERATIONS if op in row))


@finder("kafka-python / {} / notes", "runner / {} / notes")
def notes_line(client: str, scenario: str, notes: str) -> Finding:
    """A scenario's recorded notes (what was read back after it: topic exists, position
    past the failed record, IO threads left, restarts...), as recorded."""
    return Finding(f"{client} / {scenario} / notes", notes)


@finder("runner events / {}")
def runner_events(scenario: str, kinds: Sequence[str]) -> Finding:
    """The runner's lifecycle milestones in the order they fired (connect, group_join,
    crash, stop, disconnect; rebalances and commits left out, their number varies)."""
    return Finding(f"runner events / {scenario}", milestones(list(kinds)))


@finder("runner / broker stopped while running: ended by itself within {} s of the stop "
        "(session timeout {} s)")
def runner_ended_after_stop(stopped: Mapping[str, Any], session_timeout_s: float) -> Finding:
    """Whether the runner ended on its own (state STOPPED or CRASHED) in the time it was
    watched after its broker stopped, a time longer than the session timeout (so a runner
    that gives up once its coordinator is lost would show as True). A runner still RUNNING,
    or restarting (STARTING), has not ended."""
    after = stopped["after_s"]
    if after <= session_timeout_s:
        raise ValueError(f"watched {after:g} s after the stop: must exceed the session timeout "
                         f"({session_timeout_s:g} s), or a runner that gives up when its session "
                         f"expires could not show it")
    return Finding(f"runner / broker stopped while running: ended by itself within {after:g} s of "
                   f"the stop (session timeout {session_timeout_s:g} s)",
                   stopped["state"] in ("STOPPED", "CRASHED"),
                   rule=f"state {after:g} s after the stop in (STOPPED, CRASHED); watched "
                        f"{after:g} s > session timeout {session_timeout_s:g} s",
                   measured={"state": stopped["state"], "waited_s": stopped.get("waited_s"),
                             "events after the stop": stopped.get("events_after_stop")})
