"""E07's findings, each computed by a finder from recorded data (never from the parameters).

- the strategies side by side (sleep vs pause, raw and adapter), ``repeats`` runs each: from
  :func:`~offsetlab.lab.experiments.e07_summary.summarize` rows; counts compare medians;
- which clock removed a worker whose handler blocked (:mod:`~offsetlab.lab.experiments.e07_clocks`):
  from the broker log's group-coordinator lines (:mod:`offsetlab.lab.broker_log`);
- a rebalance while the worker is paused (:mod:`~offsetlab.lab.experiments.e07_rebalance`):
  from the timeline, between the third member's arrival and the dependency's return.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from offsetlab.lab.broker_log import REMOVALS, GroupLogEvent
from offsetlab.lab.findings import Finding, finder, median_of

if TYPE_CHECKING:
    from offsetlab.lab.experiments.e07_clocks import ClockRun
    from offsetlab.lab.experiments.e07_core import ScenarioResult

__all__ = ["CLOCK_OF", "removal", "removal_after_s", "removal_rows", "broker_lines",
           "worker_partitions_after", "rebalanced", "fewest_members",
           "processed_twice", "lost", "commits_refused", "committed_at_end",
           "removed_by", "removal_reason", "kept_past_session", "kept_partition",
           "deliveries_while_paused", "fetched_while_paused", "pause_held"]


def _median(values: Sequence[float | int | None]) -> float | None:
    return median_of(list(values))


def _median_at_least_one(name: str, rows: Sequence[Mapping[str, Any]], key: str,
                         what: str) -> Finding:
    """``name``: the median over the repeats of ``rows[key]`` is >= 1."""
    values = [r[key] for r in rows]
    m = _median(values)
    return Finding(name, m is not None and m >= 1, rule=f"median over repeats of {what} >= 1",
                   measured=values)


# -- the strategies side by side -----------------------------------------------------------
@finder("{}: rebalances during the outage >= 1")
def rebalanced(strategy: str, rows: Sequence[Mapping[str, Any]]) -> Finding:
    return _median_at_least_one(f"{strategy}: rebalances during the outage >= 1", rows,
                                "rebalances", "rebalances")


@finder("{}: fewest members the broker listed")
def fewest_members(strategy: str, rows: Sequence[Mapping[str, Any]]) -> Finding:
    seen = [r["fewest_members"] for r in rows if r["fewest_members"] is not None]
    return Finding(f"{strategy}: fewest members the broker listed", min(seen) if seen else None,
                   rule="fewest members describe_groups listed, over every repeat",
                   measured=[r["fewest_members"] for r in rows])


@finder("{}: messages processed twice >= 1")
def processed_twice(strategy: str, rows: Sequence[Mapping[str, Any]]) -> Finding:
    return _median_at_least_one(f"{strategy}: messages processed twice >= 1", rows,
                                "duplicates", "messages processed more than once")


@finder("{}: messages lost")
def lost(strategy: str, rows: Sequence[Mapping[str, Any]]) -> Finding:
    return Finding(f"{strategy}: messages lost", sum(r["lost"] for r in rows),
                   rule="produced and never processed, summed over repeats",
                   measured=[r["lost"] for r in rows])


@finder("{}: worker commits refused with")
def commits_refused(strategy: str, rows: Sequence[Mapping[str, Any]]) -> Finding:
    errors = sorted({e for r in rows for e in r["commit_errors"]})
    return Finding(f"{strategy}: worker commits refused with", errors,
                   rule="error classes of refused commits, over every repeat",
                   measured=[r["commit_failed"] for r in rows])


@finder("{}: committed position == log end")
def committed_at_end(strategy: str, rows: Sequence[Mapping[str, Any]]) -> Finding:
    return Finding(f"{strategy}: committed position == log end",
                   bool(rows) and all(r["committed_at_end"] for r in rows),
                   rule="committed offsets read back equal the log end offsets, in every repeat",
                   measured=[r["committed_at_end"] for r in rows])


# -- which clock removed the blocked worker (from the broker log) ---------------------------
#: a removal line's kind -> the clock behind it. kafka-python 3.0.12 sends ``LeaveGroup``
#: from its heartbeat loop when ``poll()`` was not called for ``max_poll_interval_ms`` (or on
#: ``close()``, which the worker does not reach while it blocks), and sends
#: ``max_poll_interval_ms`` as the JoinGroup's rebalance timeout, the time the broker gives a
#: member to rejoin (join) and to sync; a heartbeat expiry is the session timeout.
CLOCK_OF = {"leave_group": "max poll interval", "join_timeout": "max poll interval",
            "sync_timeout": "max poll interval", "heartbeat_expired": "session timeout"}
_HOW = {"heartbeat_expired": "heartbeat expiration", "join_timeout": "rebalance timeout (join)",
        "sync_timeout": "rebalance timeout (sync)"}


def removal(run: ClockRun, member: str = "worker") -> GroupLogEvent | None:
    """The first broker log line removing ``member`` (member ids start with the client id)
    while it blocked (between the sleep's start and end), or None."""
    if run.sleep_start is None or run.sleep_end is None:
        return None
    for e in run.events:
        if (e.kind in REMOVALS and e.member is not None and e.member.startswith(f"{member}-")
                and e.at is not None and run.sleep_start <= e.at <= run.sleep_end):
            return e
    return None


def removal_rows(runs: Mapping[str, Sequence[ClockRun]]) -> list[dict[str, Any]]:
    """One row per clock run: its removal line, when, the client's reason (a table)."""
    rows = []
    for name, rs in runs.items():
        for i, r in enumerate(rs):
            e = removal(r)
            rows.append({"case": name, "repeat": i, "removal line": e.kind if e else None,
                         "s after the sleep began": removal_after_s(r),
                         "client reason": e.reason if e else None,
                         "joiner after s": (None if r.joiner_at is None or r.sleep_start is None
                                            else round(r.joiner_at - r.sleep_start, 2)),
                         "join retries": r.join_retries})
    return rows


def broker_lines(run: ClockRun, width: int = 170) -> list[str]:
    """The group coordinator's lines of one run, from the member's or group's text on."""
    out = []
    for e in run.events:
        cut = e.line.find("] ", e.line.find("GroupMetadataManager"))
        out.append(e.line[cut + 2 if cut >= 0 else 0:][:width])
    return out


def removal_after_s(run: ClockRun) -> float | None:
    """Seconds from the start of the worker's sleep to the broker's removal line."""
    e = removal(run)
    return None if e is None or e.at is None or run.sleep_start is None else round(e.at - run.sleep_start, 3)


#: how late after its clock a removal line may come and still be that clock's doing:
#: kafka-python checks the poll timer on its heartbeat loop, the broker its session expiry on
#: its own timer (0.6-0.9 s late in the committed runs)
CLOCK_SLACK_S = 3.0
#: how early: the clocks count from the worker's last ``poll()`` (the poll timer) or its
#: last heartbeat, both a little before the sleep began, where the time is measured from
#: (a LeaveGroup 14.95 s into the sleep for a 15 s max poll interval was seen)
CLOCK_EARLY_S = 1.0


def _clock(run: ClockRun) -> str:
    """The clock a removal line names, if its time fits that clock: a LeaveGroup or a
    heartbeat expiry from ``[clock - CLOCK_EARLY_S, clock + CLOCK_SLACK_S]`` after the sleep
    began; a join or sync timeout no sooner than ``clock - CLOCK_EARLY_S``.
    A line at any other time does not get a clock (``<kind> at an unexplained time``)."""
    e = removal(run)
    if e is None:
        return "not removed"
    clock = CLOCK_OF[e.kind]
    clock_s = (run.case.session_timeout_ms if clock == "session timeout"
               else run.case.max_poll_interval_ms) / 1000
    after = removal_after_s(run)
    fits = after is not None and clock_s - CLOCK_EARLY_S <= after and (
        e.kind in ("join_timeout", "sync_timeout") or after <= clock_s + CLOCK_SLACK_S)
    return clock if fits else f"{e.kind} at an unexplained time"


def _agreed(values: list[str]) -> str:
    """The value every repeat gave, or the distinct values joined (a finding that differs
    between repeats says so)."""
    distinct = sorted(set(values))
    return distinct[0] if len(distinct) == 1 else " / ".join(distinct)


def _cases(suffix: str) -> tuple[str, ...]:
    """The templates of a clocks finding: the case name (:attr:`ClockCase.name`) + suffix."""
    return tuple(f"{what}, session {{}} {order} max poll {{}}: {suffix}"
                 for what in ("sleeping", "rebalancing") for order in ("<", ">"))


@finder(*_cases("worker removed by"))
def removed_by(case: str, runs: Sequence[ClockRun]) -> Finding:
    """``session timeout``, ``max poll interval`` or ``not removed``, from the broker's
    removal line in every repeat (:data:`CLOCK_OF`)."""
    return Finding(f"{case}: worker removed by", _agreed([_clock(r) for r in runs]),
                   rule="the broker log's removal line while the worker blocked: LeaveGroup, join "
                        "or sync timeout -> max poll interval; heartbeat expiry -> session timeout; "
                        f"none -> not removed; the line's time must fit its clock ({CLOCK_EARLY_S:g} "
                        f"s early to {CLOCK_SLACK_S:g} s late) (all repeats)",
                   measured=[removal_after_s(r) for r in runs])


@finder(*_cases("the broker's reason for removing the worker"))
def removal_reason(case: str, runs: Sequence[ClockRun]) -> Finding:
    def how(run: ClockRun) -> str:
        e = removal(run)
        if e is None:
            return "not removed"
        if e.kind == "leave_group":
            return f"LeaveGroup, client reason: {e.reason}"
        return _HOW[e.kind]

    return Finding(f"{case}: the broker's reason for removing the worker",
                   _agreed([how(r) for r in runs]),
                   rule="the removal line of the broker log (all repeats)",
                   measured=[removal_after_s(r) for r in runs])


@finder(*_cases("broker kept the sleeping worker past its session timeout"))
def kept_past_session(case: str, runs: Sequence[ClockRun]) -> Finding:
    """Heartbeats went on while the handler slept: the broker removed the worker (or did not)
    well after its session timeout. A member that stops heartbeating when its handler blocks
    is removed about one session timeout after its last heartbeat; the rule asks for 1.5 x."""
    session_s = runs[0].case.session_timeout_ms / 1000 if runs else 0.0
    times = [removal_after_s(r) if removal(r) is not None else r.case.sleep_s for r in runs]
    m = _median(times)
    return Finding(f"{case}: broker kept the sleeping worker past its session timeout",
                   m is not None and m > 1.5 * session_s,
                   rule=f"median s from sleep start to removal (the sleep when not removed) > "
                        f"1.5 x session timeout ({1.5 * session_s:g} s)",
                   measured=times)


# -- a rebalance while the worker is paused (from the timeline) -----------------------------
def _window(result: ScenarioResult) -> tuple[float, float]:
    return result.marks["rebalance_start"], result.marks["outage_end"]


def worker_partitions_after(result: ScenarioResult) -> list[tuple[str, list[int]]]:
    """The worker's membership rows (assigned / revoked / lost, with their partitions) from the
    third member's arrival to the dependency's return."""
    frame = result.timeline.to_frame()
    start, end = _window(result)
    rows = frame[(frame.who == "worker") & frame.what.isin(["assigned", "revoked", "lost"])
                 & (frame.t >= start) & (frame.t <= end)]
    return [(str(what), sorted(d.get("partitions", [])) if isinstance(d, dict) else [])
            for what, d in zip(rows.what, rows.detail, strict=True)]


def deliveries_while_paused(result: ScenarioResult) -> int:
    """Records handed to the worker (``consumed`` rows) from the third member's arrival to the
    dependency's return: the worker had paused its partition before that window."""
    frame = result.timeline.to_frame()
    start, end = _window(result)
    rows = frame[(frame.who == "worker") & (frame.what == "consumed") & (frame.t >= start)
                 & (frame.t < end)]
    return len(rows)


def handed_back(result: ScenarioResult) -> bool:
    """The premise of one repeat: the worker was revoked, then its last membership row
    before the dependency came back is an ``assigned`` holding the partition it paused."""
    g = worker_partitions_after(result)
    return (any(w == "revoked" for w, _ in g) and g[-1][0] == "assigned"
            and result.marks.get("paused_partition") in g[-1][1])


@finder("{}: worker was handed its partition again by the rebalance")
def kept_partition(strategy: str, results: Sequence[ScenarioResult]) -> Finding:
    """The scenario's premise, measured: after the third member arrived the worker was
    revoked and assigned again, and held the partition it had paused when the dependency
    came back."""
    got = [worker_partitions_after(r) for r in results]
    ok = [handed_back(r) for r in results]
    return Finding(f"{strategy}: worker was handed its partition again by the rebalance",
                   bool(results) and all(ok),
                   rule="the worker's last membership row before the dependency was back is an "
                        "'assigned' holding the partition it paused, after a revoke (every repeat)",
                   measured=[[w for w, _ in g] for g in got])


@finder("{}: records delivered to the paused worker after the rebalance")
def fetched_while_paused(strategy: str, results: Sequence[ScenarioResult]) -> Finding:
    counts = [deliveries_while_paused(r) for r in results]
    m = _median(counts)
    return Finding(f"{strategy}: records delivered to the paused worker after the rebalance",
                   None if m is None else int(m) if float(m).is_integer() else m,
                   rule="median over repeats of records handed to the worker between the third "
                        "member's arrival and the dependency's return", measured=counts)


@finder("{}: pause held through the rebalance")
def pause_held(strategy: str, results: Sequence[ScenarioResult]) -> Finding:
    """Judged only on the repeats whose premise held (:func:`handed_back`); with none, the
    value says the question was not tested rather than True."""
    tested = [r for r in results if handed_back(r)]
    counts = [deliveries_while_paused(r) for r in tested]
    value: bool | str = (all(c == 0 for c in counts) if tested
                         else "not tested: the partition did not come back while paused")
    return Finding(f"{strategy}: pause held through the rebalance", value,
                   rule="no record handed to the worker between the third member's arrival and the "
                        "dependency's return, in every repeat where the rebalance handed the "
                        "paused partition back", measured={"records while paused": counts,
                                                            "repeats tested": len(tested),
                                                            "repeats": len(results)})
