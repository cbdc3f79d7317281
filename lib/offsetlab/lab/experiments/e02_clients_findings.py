"""E02's section on every client: values computed from the members' recorded events
(:mod:`offsetlab.lab.experiments.e02_clients`), and the finders the notebook prints.

Event times are the children's wall clocks (``at``); a member's own start is its ``ready``
event, else (a client that failed before it said ready) the parent's spawn time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from offsetlab.lab.clients.child import Event
from offsetlab.lab.clients.conformance_join_values import error_name
from offsetlab.lab.findings import Finding, finder

__all__ = ["TIMING_KINDS", "event_kinds", "returned", "failures", "down_outcome",
           "refused_outcome", "run02_kinds", "run02_returned", "down_ends_by_itself",
           "down_first_report", "refused_joined", "refused_run_settled", "refused_first_report"]

#: kinds whose presence depends on timing (KafkaJS heartbeats every 3 s from its fetch loop,
#: whether one falls inside a short run or not): measured, not part of the kinds finding
TIMING_KINDS = ("heartbeat",)


def event_kinds(events: Sequence[Event], ignore: Sequence[str] = TIMING_KINDS) -> list[str]:
    """The sorted distinct kinds of event a member reported (without ``ignore``)."""
    return sorted({str(e.get("event")) for e in events} - set(ignore))


def returned(events: Sequence[Event]) -> dict[str, str] | None:
    """What KafkaJS's ``connect()``, ``subscribe()`` and ``run()`` resolved to (the
    ``returned`` of its ``run_returned`` event); None where the member does not report it."""
    ev = next((e for e in events if e.get("event") == "run_returned" and "returned" in e), None)
    return None if ev is None else dict(ev["returned"])


def _start(events: Sequence[Event], spawned_at: float) -> float:
    return next((float(e["at"]) for e in events if e.get("event") == "ready"), spawned_at)


def failures(events: Sequence[Event], spawned_at: float) -> list[dict[str, Any]]:
    """Every ``error``/``crash`` event: its name (librdkafka code, else the error's class),
    seconds after the member's start, ``where``, ``fatal``, ``restart``."""
    t0 = _start(events, spawned_at)
    return [{"event": e["event"], "name": str(e.get("code") or error_name(e.get("error"))),
             "s": round(float(e["at"]) - t0, 3), "where": e.get("where"),
             "fatal": e.get("fatal"), "restart": e.get("restart"),
             "error": str(e.get("error"))[:160]}
            for e in events if e.get("event") in ("error", "crash")]


def _ended(events: Sequence[Event]) -> dict[str, Any] | None:
    """The member's end by itself: a ``stopped`` event with ``clean`` false (a fatal error)."""
    return next((e for e in events if e.get("event") == "stopped" and not e.get("clean")), None)


def down_outcome(events: Sequence[Event], spawned_at: float, cap_s: float) -> dict[str, Any]:
    """A member with no broker: its first report, every distinct name it reported, how many
    reports, and whether (and after how many seconds) it ended by itself while it was watched
    (:func:`~offsetlab.lab.experiments.clients_section.run_member` watches it for ``cap_s``
    after its ``ready``; seconds count from ``ready``, else from the spawn: kafka-python's
    constructor is what fails, so its seconds include the interpreter's start)."""
    fails = failures(events, spawned_at)
    end = _ended(events)
    t0 = _start(events, spawned_at)
    ended_s = None if end is None else round(float(end["at"]) - t0, 3)
    return {"first": fails[0]["name"] if fails else None,
            "first_s": fails[0]["s"] if fails else None,
            "first_fatal": fails[0]["fatal"] if fails else None,
            "names": sorted({f["name"] for f in fails}), "reports": len(fails),
            "ended_by_itself": end is not None,
            "ended_s": ended_s, "cap_s": cap_s}


def refused_outcome(events: Sequence[Event], spawned_at: float) -> dict[str, Any]:
    """A member whose join the broker refuses: whether it held partitions (a ``join`` with
    some), whether ``run()`` resolved (``run_returned``) or rejected (an ``error`` at
    ``where: run``), its crashes (name, restart) and errors, whether it ended by itself."""
    fails = failures(events, spawned_at)
    joined = any(e.get("event") == "join" and e.get("partitions") for e in events)
    if any(e.get("event") == "run_returned" for e in events):
        run = "resolved"
    elif any(e.get("event") == "error" and e.get("where") == "run" for e in events):
        run = "rejected"
    else:
        run = "neither"
    return {"joined": joined, "run": run,
            "crashes": [(f["name"], f["restart"]) for f in fails if f["event"] == "crash"],
            "errors": sorted({(f["name"], str(f["where"]), bool(f["fatal"])) for f in fails
                              if f["event"] == "error"}),
            "error_reports": sum(f["event"] == "error" for f in fails),
            "first": fails[0]["name"] if fails else None,
            "first_s": fails[0]["s"] if fails else None,
            "ended_by_itself": _ended(events) is not None}


# -- finders ------------------------------------------------------------------------------------
@finder("{}: run02 event kinds (heartbeat aside)")
def run02_kinds(column: str, events: Sequence[Event]) -> Finding:
    kinds = event_kinds(events)
    return Finding(f"{column}: run02 event kinds (heartbeat aside)", kinds,
                   rule="sorted distinct event kinds of a member that joined, consumed, "
                        "committed and was stopped (heartbeat's presence depends on timing)",
                   measured={"heartbeats": sum(e.get("event") == "heartbeat" for e in events)})


@finder("{}: run02 connect() / subscribe() / run() resolved to")
def run02_returned(column: str, events: Sequence[Event]) -> Finding:
    got = returned(events)
    value = None if got is None else [got.get(k) for k in ("connect", "subscribe", "run")]
    return Finding(f"{column}: run02 connect() / subscribe() / run() resolved to", value,
                   rule="the run_returned event's returned (KafkaJS member)", measured=got)


@finder("{}: broker down at start: ends by itself within the cap")
def down_ends_by_itself(column: str, outcome: dict[str, Any]) -> Finding:
    return Finding(f"{column}: broker down at start: ends by itself within the cap",
                   outcome["ended_by_itself"],
                   rule=f"a fatal error ended the member while watched ({outcome['cap_s']:g} s "
                        "after its ready)",
                   measured={k: outcome[k] for k in ("ended_s", "first_s", "reports", "cap_s")})


@finder("{}: broker down at start: first report")
def down_first_report(column: str, outcome: dict[str, Any]) -> Finding:
    return Finding(f"{column}: broker down at start: first report", outcome["first"],
                   rule="the first error/crash event's class (librdkafka: its code)",
                   measured={k: outcome[k] for k in ("first_s", "first_fatal", "names", "reports")})


@finder("{}: session below the broker's minimum: held partitions")
def refused_joined(column: str, outcome: dict[str, Any]) -> Finding:
    return Finding(f"{column}: session below the broker's minimum: held partitions",
                   outcome["joined"], rule="a join event with partitions",
                   measured={"first": outcome["first"], "first_s": outcome["first_s"]})


@finder("{}: session below the broker's minimum: await run()")
def refused_run_settled(column: str, outcome: dict[str, Any]) -> Finding:
    return Finding(f"{column}: session below the broker's minimum: await run()", outcome["run"],
                   rule="resolved: a run_returned event; rejected: an error at where=run",
                   measured={"crashes": outcome["crashes"], "errors": outcome["errors"],
                             "error_reports": outcome["error_reports"]})


@finder("{}: session below the broker's minimum: first report")
def refused_first_report(column: str, outcome: dict[str, Any]) -> Finding:
    crash = outcome["crashes"][0] if outcome["crashes"] else None
    return Finding(f"{column}: session below the broker's minimum: first report", outcome["first"],
                   rule="the first error/crash event's class (librdkafka: its code)",
                   measured={"first_s": outcome["first_s"], "first_crash": crash,
                             "ended_by_itself": outcome["ended_by_itself"]})
