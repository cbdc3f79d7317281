"""Which clock removed a member whose handler blocked, from the broker's own line: E07's
vocabulary (``session timeout``, ``max poll interval``, ``not removed``) for both group
protocols and every client.

E07 (:mod:`offsetlab.lab.experiments.e07_findings`) reads classic groups of kafka-python; its
rule, its kinds (:data:`~offsetlab.lab.experiments.e07_findings.CLOCK_OF`) and its tolerances
(``CLOCK_EARLY_S``, ``CLOCK_SLACK_S``) are reused here unchanged, and generalised in two
ways:

- the consumer protocol's lines (KIP-848, :data:`offsetlab.lab.broker_log.CONSUMER_REMOVALS`):
  a leave heartbeat (member epoch -1) while the handler blocks is the client leaving by itself
  (its max poll interval, like a classic ``LeaveGroup``); a fence for a failed epoch
  transition is the rebalance timeout (the client's max poll interval); a session expiry is
  the session timeout...
- ...unless the client stopped heartbeating only when its max poll interval passed: then the
  broker's session expiry comes one session after that, ``max_poll + session`` into the
  block (librdkafka 2.16 under the consumer protocol: it logs ``MAXPOLL ... leaving group``
  and the broker fences it by session expiry, measured). An expiry line is given the clock
  whose expected time it fits; a line that fits neither (or both) is not given a clock.

E07 keeps its own copy of the classic rule (changing a committed notebook's reader for a
new column was not a small, safe change); both read the same kinds and tolerances.
"""

from __future__ import annotations

from collections.abc import Sequence

from offsetlab.lab.broker_log import CONSUMER_REMOVALS, REMOVALS, GroupLogEvent
from offsetlab.lab.experiments.e07_findings import CLOCK_EARLY_S, CLOCK_OF, CLOCK_SLACK_S

__all__ = ["SESSION", "MAX_POLL", "NOT_REMOVED", "CLOCKS_OF", "EXPIRIES", "first_removal",
           "removal_clock"]

SESSION, MAX_POLL, NOT_REMOVED = "session timeout", "max poll interval", "not removed"
#: a removal line's kind -> its clock (an expiry's clock is decided by its time)
CLOCKS_OF = {**CLOCK_OF, "leave_heartbeat": MAX_POLL, "rebalance_timeout": MAX_POLL,
             "session_expired": SESSION}
#: the kinds that say "no heartbeat for a session"
EXPIRIES = ("heartbeat_expired", "session_expired")


def first_removal(events: Sequence[GroupLogEvent], start: float, end: float, *,
                  member: str | None = None) -> GroupLogEvent | None:
    """The first removal line (either protocol) with a wall-clock time in ``[start, end]``
    (of ``member`` only, when given: its id or the prefix before ``-``)."""
    for e in events:
        if e.kind not in REMOVALS + CONSUMER_REMOVALS or e.at is None or not start <= e.at <= end:
            continue
        if member is not None and e.member is not None and not (
                e.member == member or e.member.startswith(f"{member}-")):
            continue
        return e
    return None


def removal_clock(event: GroupLogEvent | None, after_s: float | None, *, session_s: float,
                  max_poll_s: float | None, heartbeat_s: float = 1.0,
                  session_from_s: float | None = None) -> str:
    """The clock behind ``event``, a removal line ``after_s`` seconds into the block.

    A ``LeaveGroup`` / leave heartbeat / heartbeat expiry must come from ``clock -
    CLOCK_EARLY_S`` to ``clock + CLOCK_SLACK_S``; a join/sync/transition timeout no sooner than
    ``clock - CLOCK_EARLY_S``. An expiry fits the session timeout or the max poll interval at
    ``max_poll_s + session_s``. The session runs from the member's last heartbeat: at
    ``session_from_s`` (seconds from the block's start, negative before it) when the member
    reports its heartbeats (KafkaJS), else some time in the heartbeat interval before the block
    (one ``heartbeat_s`` more early tolerance); after the max poll interval the same.
    ``max_poll_s`` None: the client has no max poll interval. Anything else is ``"<kind> at an
    unexplained time"``."""
    if event is None:
        return NOT_REMOVED
    if after_s is None or event.kind not in CLOCKS_OF:
        return f"{event.kind} at an unexplained time"

    def within(clock_s: float, early_s: float = CLOCK_EARLY_S) -> bool:
        return clock_s - early_s <= after_s <= clock_s + CLOCK_SLACK_S

    if event.kind in EXPIRIES:
        session_ok = (within(session_s, CLOCK_EARLY_S + heartbeat_s) if session_from_s is None
                      else within(session_from_s + session_s))
        fits = [c for c, ok in ((SESSION, session_ok),
                                (MAX_POLL, max_poll_s is not None and within(
                                    max_poll_s + session_s, CLOCK_EARLY_S + heartbeat_s)))
                if ok]
        return fits[0] if len(fits) == 1 else (
            f"{event.kind} at an unexplained time" if not fits else f"{event.kind} at an ambiguous time")
    if max_poll_s is None:
        return f"{event.kind} at an unexplained time"
    if event.kind in ("join_timeout", "sync_timeout", "rebalance_timeout"):
        return MAX_POLL if after_s >= max_poll_s - CLOCK_EARLY_S else f"{event.kind} at an unexplained time"
    return MAX_POLL if within(max_poll_s) else f"{event.kind} at an unexplained time"
