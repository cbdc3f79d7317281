"""The group coordinator's own account of a group, read from the embedded broker's log.

The group's state (``describe_groups``) says who is a member now, not why a member went away.
The broker says why in its log: Apache Kafka 4.1 runs the new group coordinator
(``org.apache.kafka.coordinator.group.GroupMetadataManager``) for classic groups too, and it
logs at INFO (the embedded broker binds slf4j-simple at ``info``, with wall-clock times:
:mod:`offsetlab.brokers.kafka`):

=====================  ==========================================================================
kind                   the line (Kafka 4.1.1, classic group)
=====================  ==========================================================================
``leave_group``        ``[Group g] Member m has left group through explicit `LeaveGroup` request;
                       client reason: r`` (also the ``Pending member`` and ``[GroupId g] Dynamic
                       member`` forms)
``heartbeat_expired``  ``Member m in group g has failed, removing it from the group.`` (its
                       session timeout passed without a heartbeat) and ``Pending member m in group
                       g has been removed after session timeout expiration.``
``join_timeout``       ``Group g removed dynamic members who haven't joined: [m, ...]`` (a
                       rebalance's join phase ended after the members' rebalance timeout)
``sync_timeout``       ``Group g removed members who haven't sent their sync requests: [m, ...]``
``joined``             ``Pending dynamic member with id m joins group g in S state. Adding ...``
``rebalance``          ``Preparing to rebalance group g in state S with old generation n (reason:
                       r).`` (member: None)
``stabilized``         ``Stabilized group g generation n with k members.`` (member: None; reason:
                       ``n``): the join phase of generation n ended (JoinGroup answered)
``assignment_received`` ``Assignment received from leader m for group g for generation n. ...``
                       (member: the leader; reason: ``n``): the leader's SyncGroup brought the
                       assignment; from here on a member of generation n can get its partitions
=====================  ==========================================================================

Consumer-protocol groups (KIP-848, ``group.protocol=consumer``) have their own lines, all
``[GroupId g] ...`` (Kafka 4.1.1, seen with confluent-kafka 2.16 / librdkafka 2.16.0):

=====================  ==========================================================================
kind                   the line
=====================  ==========================================================================
``leave_heartbeat``    ``[GroupId g] Member m left the consumer group.`` (a heartbeat with member
                       epoch -1: the client's close; also ``Static member m with instance id i
                       (temporarily )left the consumer group.``; reason: ``temporarily`` or None)
``session_expired``    ``[GroupId g] Member m fenced from the group because the member session
                       expired.`` (no heartbeat for the group's session timeout)
``rebalance_timeout``  ``[GroupId g] Member m fenced from the group because it failed to transition
                       from epoch n within tms.`` (reason: the line's text after "because")
``fenced``             any other ``fenced from the group because r.`` (reason r)
``joined``             ``[GroupId g] Member m joins the consumer group using the consumer
                       protocol.``
``epoch_bump``         ``[GroupId g] Bumped group epoch to n ...`` (member: None; reason: ``n``):
                       the group's membership or subscriptions changed, the consumer protocol's
                       counterpart of a rebalance
=====================  ==========================================================================

A librdkafka member whose ``max.poll.interval.ms`` passes under the consumer protocol logs
``MAXPOLL ... leaving group`` on its own side, but the broker's line is a ``session_expired``
fence one session timeout after the member's last heartbeat (measured here: max poll 4 s,
session 3 s, fence 6.9 s into the block), not a ``leave_heartbeat``.

:func:`group_events` parses a log (or its lines) into :class:`GroupLogEvent` s; a reader
that starts at a byte offset (:func:`log_size`) sees only what a scenario caused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

__all__ = ["GroupLogEvent", "REMOVALS", "CONSUMER_REMOVALS", "REBALANCES", "JOIN_COMPLETES", "group_events", "log_size", "parse_line", "read_log"]

#: the kinds that mean "the coordinator removed this member from the group"
REMOVALS = ("leave_group", "heartbeat_expired", "join_timeout", "sync_timeout")
#: the same for consumer-protocol (KIP-848) groups
CONSUMER_REMOVALS = ("leave_heartbeat", "session_expired", "rebalance_timeout", "fenced")
#: the kinds that mean "the broker completed a join": a classic generation's assignment
#: arrived (SyncGroup from its leader), a consumer-protocol group's epoch was bumped (its new
#: target assignment is computed in the same step; a member gets its partitions afterwards)
JOIN_COMPLETES = ("assignment_received", "epoch_bump")
#: the kinds that mean "the group's membership is changing": a classic rebalance, a
#: consumer-protocol group epoch bump
REBALANCES = ("rebalance", "epoch_bump")


@dataclass(frozen=True)
class GroupLogEvent:
    """One group-coordinator line: ``at`` is its wall-clock time (epoch seconds; None when
    the log has no wall-clock times), ``member`` the member id (None for a group-wide line),
    ``reason`` the client's or the broker's reason where the line gives one."""

    at: float | None
    group: str
    member: str | None
    kind: str
    reason: str | None = None
    line: str = ""


_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}) ")
_MEMBER_LISTS = {
    "join_timeout": re.compile(r"Group (?P<group>\S+) removed dynamic members who haven't joined: "
                               r"\[?(?P<members>[^\]]*)\]?"),
    "sync_timeout": re.compile(r"Group (?P<group>\S+) removed members who haven't sent their sync "
                               r"requests: \[?(?P<members>[^\]]*)\]?"),
}
_ONE_MEMBER = [
    ("leave_group", re.compile(r"\[Group (?P<group>\S+)\] (?:Pending )?[Mm]ember (?P<member>\S+) has "
                               r"left group through explicit `LeaveGroup` request; client reason: "
                               r"(?P<reason>.*)$")),
    ("leave_group", re.compile(r"\[GroupId (?P<group>\S+)\] (?:Dynamic|Static) member (?P<member>\S+)"
                               r"(?: with instance id \S+)? has left group through explicit "
                               r"`LeaveGroup` request; client reason: (?P<reason>.*)$")),
    ("heartbeat_expired", re.compile(r"Member (?P<member>\S+) in group (?P<group>\S+) has failed, "
                                     r"removing it from the group\.")),
    ("heartbeat_expired", re.compile(r"Pending member (?P<member>\S+) in group (?P<group>\S+) has been "
                                     r"removed after session timeout expiration\.")),
    ("joined", re.compile(r"Pending dynamic member with id (?P<member>\S+) joins group (?P<group>\S+) "
                          r"in \S+ state\. Adding")),
    ("rebalance", re.compile(r"Preparing to rebalance group (?P<group>\S+) in state \S+ with old "
                             r"generation \d+ \(reason: (?P<reason>.*)\)\.?$")),
    ("stabilized", re.compile(r"Stabilized group (?P<group>\S+) generation (?P<reason>\d+) with \d+ "
                              r"members")),
    ("assignment_received", re.compile(r"Assignment received from leader (?P<member>\S+) for group "
                                       r"(?P<group>\S+) for generation (?P<reason>\d+)")),
    # the consumer protocol (KIP-848)
    ("leave_heartbeat", re.compile(r"\[GroupId (?P<group>\S+)\] (?:Static )?[Mm]ember (?P<member>\S+)"
                                   r"(?: with instance id \S+)? (?:(?P<reason>temporarily) )?left the "
                                   r"consumer group\.")),
    ("session_expired", re.compile(r"\[GroupId (?P<group>\S+)\] Member (?P<member>\S+) fenced from the "
                                   r"group because (?P<reason>(?:the member|its) session expired)\.")),
    ("rebalance_timeout", re.compile(r"\[GroupId (?P<group>\S+)\] Member (?P<member>\S+) fenced from "
                                     r"the group because (?P<reason>it failed to transition from epoch "
                                     r".*)\.$")),
    ("fenced", re.compile(r"\[GroupId (?P<group>\S+)\] Member (?P<member>\S+) fenced from the group "
                          r"because (?P<reason>.*?)\.?$")),
    ("joined", re.compile(r"\[GroupId (?P<group>\S+)\] Member (?P<member>\S+) joins the consumer "
                          r"group using the consumer protocol\.")),
    ("epoch_bump", re.compile(r"\[GroupId (?P<group>\S+)\] Bumped group epoch to (?P<reason>\d+)")),
]


def _time(line: str) -> float | None:
    m = _TIME.match(line)
    if not m:
        return None
    return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


def parse_line(line: str) -> list[GroupLogEvent]:
    """The group events one log line reports (a line that lists several removed members
    gives one event each; a line about anything else gives none)."""
    line = line.rstrip("\n")
    if "Group" not in line and "group" not in line:
        return []
    at = _time(line)
    for kind, pattern in _MEMBER_LISTS.items():
        m = pattern.search(line)
        if m:
            members = [x.strip() for x in m.group("members").split(",") if x.strip()]
            return [GroupLogEvent(at, m.group("group"), member, kind, None, line) for member in members]
    for kind, pattern in _ONE_MEMBER:
        m = pattern.search(line)
        if m:
            d = m.groupdict()
            return [GroupLogEvent(at, d["group"], d.get("member"), kind, d.get("reason"), line)]
    return []


def group_events(lines: Iterable[str], group: str | None = None) -> list[GroupLogEvent]:
    """Every group event in ``lines`` (of ``group`` only, when given), in log order."""
    out = []
    for line in lines:
        out.extend(e for e in parse_line(line) if group is None or e.group == group)
    return out


def log_size(path: Path | str | None) -> int:
    """The log's size now: read from here to see only what happens next."""
    if path is None or not Path(path).exists():
        return 0
    return Path(path).stat().st_size


def read_log(path: Path | str, start: int = 0) -> list[str]:
    """The log's lines from byte offset ``start`` on."""
    with open(path, "rb") as f:
        f.seek(start)
        return f.read().decode("utf-8", errors="replace").splitlines()
