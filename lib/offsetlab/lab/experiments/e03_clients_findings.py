"""Findings of E03's section "The same on KafkaJS and confluent-kafka" (fail01 on every
client: :mod:`offsetlab.lab.experiments.e03_clients`).

Each finder takes one :class:`~offsetlab.lab.experiments.e03_clients.CaseRun` (its recorded
events and the committed offset read back from the broker) and names the finding after the
client column and the handler variant.
"""

from __future__ import annotations

from offsetlab.lab.experiments.e03_clients import CaseRun, calls
from offsetlab.lab.findings import Finding, finder

__all__ = ["handed_again", "lost_after_restart", "commits_before_retry", "crashes_before_retry",
           "committed_past_before_failure"]


def _label(run: CaseRun) -> str:
    return f"{run.column}, {run.case.name}"


def _retry_window(run: CaseRun) -> tuple[float, float] | None:
    """(the first failed call's time, the failed message's next call's time or +inf)."""
    seq = calls(run.a_events, run.case.values)
    first = next((e for e in seq if e["event"] == "handler_failed"), None)
    if first is None:
        return None
    again = next((e for e in seq if float(e["at"]) > float(first["at"])
                  and e.get("value") == first.get("value")), None)
    return float(first["at"]), float(again["at"]) if again else float("inf")


@finder("{}: messages handed to A's handler again after message {} failed")
def handed_again(run: CaseRun) -> Finding:
    """The sorted messages A's handler was given more than once (the failed call counts)."""
    return Finding(f"{_label(run)}: messages handed to A's handler again after message "
                   f"{run.case.fail_value} failed", run.again(),
                   rule="sorted values with more than one handler call in A",
                   measured={"order": run.order(), "error": run.error})


@finder("{}: lost after a clean stop and a restart")
def lost_after_restart(run: CaseRun) -> Finding:
    """The messages no member handled, after the restarted member read to the end marker
    (the broker's committed offset after A's stop in ``measured``)."""
    return Finding(f"{_label(run)}: lost after a clean stop and a restart", run.lost(),
                   rule="values with no handled event in A or the restarted B",
                   measured={"committed_after_a": run.committed_after_a.get(0),
                             "resumes_at": run.resumes_at(), "restart": run.restart(),
                             "error": run.error})


@finder("{}: offsets committed between the failure and the failed message's next delivery")
def commits_before_retry(run: CaseRun) -> Finding:
    """A's ``commit`` events (committed offsets) after the first failed call and before the
    failed message was handed to the handler again (all later ones if it never was)."""
    window = _retry_window(run)
    got = [] if window is None else [int(e["offset"]) for e in run.a_events
                                     if e.get("event") == "commit"
                                     and window[0] <= float(e["at"]) <= window[1]]
    return Finding(f"{_label(run)}: offsets committed between the failure and the failed "
                   "message's next delivery", got, rule="commit events in that window",
                   measured={"window": window, "commits": run.a_commits()})


@finder("{}: crash events before the failed message came back")
def crashes_before_retry(run: CaseRun) -> Finding:
    """KafkaJS's CRASH events (error class, restart flag) between the first failure and the
    failed message's next delivery: [] means the client retried in place."""
    window = _retry_window(run)
    got = [] if window is None else [
        f"{str(e.get('error', '')).split(':', 1)[0]} (restart {e.get('restart')})"
        for e in run.a_events if e.get("event") == "crash"
        and window[0] <= float(e["at"]) <= window[1]]
    return Finding(f"{_label(run)}: crash events before the failed message came back", got,
                   rule="crash events in that window", measured={"window": window})


@finder("{}: committed past the failed message before it failed")
def committed_past_before_failure(run: CaseRun) -> Finding:
    """Whether a ``commit`` event before the first failed call already committed an offset
    past the failed message's (the commits of messages handled before it moved the group's
    position beyond it: a crash at the failure would have lost it)."""
    seq = calls(run.a_events, run.case.values)
    first = next((e for e in seq if e["event"] == "handler_failed"), None)
    early = [] if first is None else [
        int(e["offset"]) for e in run.a_events if e.get("event") == "commit"
        and float(e["at"]) < float(first["at"]) and int(e["offset"]) > int(first["offset"])]
    return Finding(f"{run.column}, {run.case.name}: committed past the failed message before it "
                   "failed", bool(early), rule="a commit before the failure > the failed offset",
                   measured={"early": early, "commits": run.a_commits()})
