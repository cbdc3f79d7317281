"""Findings of E04's section "The same on KafkaJS and confluent-kafka" (fail02 on every
client: message style, a commit after each message, message 2 fails once and is skipped; a
clean stop and a restart: :mod:`offsetlab.lab.experiments.e03_clients`).
"""

from __future__ import annotations

from collections.abc import Sequence

from offsetlab.lab.experiments.e03_clients import CaseRun
from offsetlab.lab.findings import Finding, finder

__all__ = ["restart_handled", "skipped_lost", "only_message_offset_rereads"]


def _label(run: CaseRun) -> str:
    return f"{run.column}, commit {run.case.name}"


@finder("{}, commit {}: messages the restarted member handled again")
def restart_handled(run: CaseRun) -> Finding:
    """The sorted messages the restarted member B handled (each was handled by A before)."""
    return Finding(f"{_label(run)}: messages the restarted member handled again", run.restart(),
                   rule="sorted values B handled before the end marker",
                   measured={"committed_after_a": run.committed_after_a.get(0),
                             "a_commits": run.a_commits(), "error": run.error})


@finder("{}, commit {}: never handled by A or the restarted member")
def skipped_lost(run: CaseRun) -> Finding:
    """The messages no member handled, after B read to the end marker."""
    return Finding(f"{_label(run)}: never handled by A or the restarted member", run.lost(),
                   rule="values with no handled event in A or the restarted B",
                   measured={"committed_after_a": run.committed_after_a.get(0),
                             "resumes_at": run.resumes_at(), "error": run.error})


@finder("{}: only the message.offset commit made the restart handle a message again")
def only_message_offset_rereads(column: str, runs: Sequence[CaseRun]) -> Finding:
    """True when the ``message_offset`` run's restart handled something and every other
    commit mode's restart handled nothing (the same column's runs)."""
    by_mode = {r.case.name: r.restart() for r in runs}
    value = bool(by_mode.get("message_offset")) and all(
        not again for mode, again in by_mode.items() if mode != "message_offset")
    return Finding(f"{column}: only the message.offset commit made the restart handle a message "
                   "again", value, rule="restart(message_offset) != [] and restart(other) == []",
                   measured=by_mode)
