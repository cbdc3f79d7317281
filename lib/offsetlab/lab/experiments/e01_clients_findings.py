"""E01's own findings for its section on every client (:mod:`offsetlab.lab.experiments.e01_clients`).

The shared join findings (``waits_out_session``, ``static_beats_session``,
``first_hold_after_delay``, ``run_returns_after_join``) are in
:mod:`offsetlab.lab.clients.conformance_findings_join`; this module adds the broker's side of
the wait after a kill.
"""

from __future__ import annotations

from typing import Any

from offsetlab.lab.findings import Finding, finder

__all__ = ["held_after_broker_drop"]


@finder("{}: the restarted member got partitions only after the broker dropped the dead member")
def held_after_broker_drop(column: str, held_after_drop_s: Any,
                           dropped_after_kill_s: Any = None) -> Finding:
    """Whether the new member's first partitions came after the broker's log line that
    dropped the dead member for an expired session (``held_after_drop_s``: its partitions'
    wall time minus that line's; negative when it held them before, None when the broker
    logged no such drop): the wait was the dead member's session, as the broker saw it."""
    v = held_after_drop_s
    ok = isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
    return Finding(f"{column}: the restarted member got partitions only after the broker dropped "
                   "the dead member", ok,
                   rule="broker log drops the dead member (session expired) before the new "
                        "member's first assignment",
                   measured={"held_after_drop_s": v, "dropped_after_kill_s": dropped_after_kill_s})
