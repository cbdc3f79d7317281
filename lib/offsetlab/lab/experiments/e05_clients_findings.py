"""E05's section on every client (fail03 at the client's default retry): values computed
from a member's recorded events (:mod:`offsetlab.lab.experiments.e05_clients`) and the
finders the notebook prints. Times are the child's wall clock (``at``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from offsetlab.lab.clients.child import Event
from offsetlab.lab.clients.conformance_join_values import error_name
from offsetlab.lab.findings import Finding, finder

__all__ = ["GROWTH", "LONG_S", "calls", "summary", "crashed", "failures_before_crash", "gaps_grow",
           "first_after_restart", "held_back"]

#: the gaps between failed deliveries "grow" when the last is at least this many times the
#: shortest (an exponential backoff x2 over 5 gaps gives about 16; a fixed or no delay about
#: 1; the shortest, not the first: on a loaded machine the first gap came out 0.96 s once,
#: the second 0.83 s) and at least ``LONG_S`` (a few milliseconds of jitter is no backoff)
GROWTH = 4.0
LONG_S = 1.0


def calls(events: Sequence[Event]) -> list[Event]:
    """The handler's calls in order: ``handled`` and ``handler_failed`` events."""
    return [e for e in events if e.get("event") in ("handled", "handler_failed")]


def summary(events: Sequence[Event], fail_value: str) -> dict[str, Any]:
    """What the member did with the failing message: its deliveries until it succeeded, the
    gaps between the failed ones, the crashes (name, restart), failures before the first
    crash, seconds from the crash to the next join and whether that join was a new member,
    the offset of the first call after the crash relative to the failing offset, and whether
    any later message was handled before the failing one succeeded."""
    cs = calls(events)
    mine = [e for e in cs if e.get("value") == fail_value]
    ok = next((e for e in mine if e["event"] == "handled"), None)
    failed = [e for e in mine if e["event"] == "handler_failed"
              and (ok is None or float(e["at"]) <= float(ok["at"]))]
    gaps = [round(float(b["at"]) - float(a["at"]), 3) for a, b in zip(failed, failed[1:], strict=False)]
    crash_evs = [e for e in events if e.get("event") == "crash"]
    crash = crash_evs[0] if crash_evs else None
    out: dict[str, Any] = {
        "deliveries": len(failed) + (ok is not None), "succeeded": ok is not None,
        "failed_offset": failed[0].get("offset") if failed else None,
        "gaps_s": gaps, "crashes": [[error_name(e.get("error")), bool(e.get("restart"))]
                                    for e in crash_evs],
        "failures_before_crash": None, "restart_s": None, "new_member": None,
        "first_after_restart": None, "later_before_success": []}
    if crash is not None:
        t = float(crash["at"])
        out["failures_before_crash"] = sum(float(e["at"]) <= t for e in failed)
        before = [e for e in events if e.get("event") == "join" and float(e["at"]) <= t]
        after = next((e for e in events if e.get("event") == "join" and float(e["at"]) > t), None)
        if after is not None:
            out["restart_s"] = round(float(after["at"]) - t, 3)
            out["new_member"] = bool(before) and after.get("member_id") != before[-1].get("member_id")
        first = next((e for e in cs if float(e["at"]) > t), None)
        if first is not None and failed:
            out["first_after_restart"] = int(first["offset"]) - int(failed[0]["offset"])
    if failed:
        off = int(failed[0]["offset"])
        until = float(ok["at"]) if ok is not None else float("inf")
        out["later_before_success"] = sorted({int(e["offset"]) for e in cs
                                              if int(e["offset"]) > off and float(e["at"]) < until})
    return out


@finder("{}: fail03 crash events (error, restart)")
def crashed(column: str, s: dict[str, Any]) -> Finding:
    return Finding(f"{column}: fail03 crash events (error, restart)", s["crashes"],
                   rule="the member's crash events (KafkaJS CRASH: error class, restart flag)",
                   measured={k: s[k] for k in ("restart_s", "new_member", "deliveries")})


@finder("{}: fail03 failed deliveries before the crash")
def failures_before_crash(column: str, s: dict[str, Any]) -> Finding:
    return Finding(f"{column}: fail03 failed deliveries before the crash",
                   s["failures_before_crash"],
                   rule="handler_failed events of the failing message up to the first crash "
                        "(None: no crash)", measured={"gaps_s": s["gaps_s"]})


@finder("{}: fail03 gaps between failed deliveries grow (last >= 4 x shortest, >= 1 s)")
def gaps_grow(column: str, s: dict[str, Any]) -> Finding:
    g = s["gaps_s"]
    value = None if len(g) < 2 else (g[-1] >= GROWTH * min(g) and g[-1] >= LONG_S)
    return Finding(f"{column}: fail03 gaps between failed deliveries grow (last >= 4 x shortest, >= 1 s)",
                   value, rule=f"last gap >= {GROWTH:g} x the shortest and >= {LONG_S:g} s "
                               "(None: fewer than 2 gaps)",
                   measured={"gaps_s": g})


@finder("{}: fail03 first offset after the restart, relative to the failed one")
def first_after_restart(column: str, s: dict[str, Any]) -> Finding:
    return Finding(f"{column}: fail03 first offset after the restart, relative to the failed one",
                   s["first_after_restart"],
                   rule="offset of the first handler call after the crash minus the failed "
                        "offset (-1: the message before it; None: no crash)",
                   measured={"restart_s": s["restart_s"]})


@finder("{}: fail03 later messages held back until the failing one succeeded")
def held_back(column: str, s: dict[str, Any]) -> Finding:
    value = s["succeeded"] and not s["later_before_success"]
    return Finding(f"{column}: fail03 later messages held back until the failing one succeeded",
                   value, rule="the failing message was handled and no later offset was "
                               "handled before that",
                   measured={"later_before_success": s["later_before_success"]})
