"""What E10 reads from logs: the brokers' account of new partition leaders, and kafka-python's
producer warnings (the errors a producer retried without telling the application).

A broker that becomes a partition's leader logs (Kafka 4.1.1, ``state.change.logger`` at INFO,
wall-clock time first; "from offset": the new leader's log end, where the next record goes)::

    2026-11-30T16:10:01.522+0000 [kafka-1-metadata-loader-event-handler] INFO
    state.change.logger - [Broker id=1] Leader t-0 with topic id Some(...) starts at leader
    epoch 1 from offset 14 with partition epoch 1, high watermark 14, ISR [1,3], ...
    Previous leader Some(2) and previous leader epoch was 0.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

__all__ = ["coordinator_lines", "leader_changes", "producer_log_errors", "error_class"]

_LEADER = re.compile(r"\[Broker id=(?P<broker>\d+)\] Leader (?P<tp>\S+) with topic id \S+ starts at "
                     r"leader epoch (?P<epoch>\d+) from offset (?P<offset>\d+)")
_COORDINATOR = re.compile(r"\[GroupCoordinator id=(?P<node>\d+) topic=__consumer_offsets "
                          r"partition=(?P<partition>\d+)\]")
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}) ")
_ERROR = re.compile(r"\b([A-Z]\w*(?:Error|Exception))\b")


def _time(line: str) -> float | None:
    m = _TIME.match(line)
    return datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() if m else None


def leader_changes(lines: Mapping[int, Iterable[str]], partitions: Iterable[str], *,
                   since: float | None = None) -> list[dict[str, Any]]:
    """``{"at", "node", "partition", "epoch", "offset"}`` for every line where a node became
    leader of one of ``partitions`` (``topic-N``), at or after ``since``; sorted by time."""
    wanted = set(partitions)
    out = []
    for node, node_lines in lines.items():
        for line in node_lines:
            m = _LEADER.search(line)
            if not m or m.group("tp") not in wanted:
                continue
            at = _time(line)
            if since is not None and (at is None or at < since):
                continue
            out.append({"at": at, "node": node, "partition": m.group("tp"),
                        "epoch": int(m.group("epoch")), "offset": int(m.group("offset"))})
    return sorted(out, key=lambda c: (c["at"] or 0.0, c["node"]))


def coordinator_lines(lines: Mapping[int, Iterable[str]], group: str) -> list[dict[str, Any]]:
    """``{"at", "node", "partition"}`` for every group-coordinator line (Kafka 4.1's
    ``GroupMetadataManager``: ``[GroupCoordinator id=N topic=__consumer_offsets partition=P]``)
    that names ``group``: which node coordinated the group when; sorted by time."""
    out = []
    for node_lines in lines.values():
        for line in node_lines:
            if group not in line:
                continue
            m = _COORDINATOR.search(line)
            if m:
                out.append({"at": _time(line), "node": int(m.group("node")),
                            "partition": int(m.group("partition"))})
    return sorted(out, key=lambda c: (c["at"] or 0.0, c["node"]))


def error_class(message: str) -> str:
    """The first error class a kafka-python log message names (``"other"`` if none)."""
    m = _ERROR.search(message)
    return m.group(1) if m else "other"


def producer_log_errors(lines: Iterable[tuple[float, str]],
                        clients: Mapping[str, str]) -> list[dict[str, Any]]:
    """kafka-python's producer warnings, attributed by client id (``clients``: client id ->
    setting): ``{"at", "setting", "error", "message"}``; lines naming no client are dropped."""
    out = []
    for at, message in lines:
        for client, setting in clients.items():
            if f"client_id={client}" in message or f"client_id='{client}'" in message:
                out.append({"at": at, "setting": setting, "error": error_class(message),
                            "message": message})
                break
    return out
