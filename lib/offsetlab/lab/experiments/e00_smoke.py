"""E00's findings: the pipeline end to end, judged from the records the broker handed out.

The group is waited for until every member holds partitions before anything is produced, so
the *assignment* cannot come out differently; what can is what each member then *consumed*
(a rebalance during the drain moves partitions) and whether every produced record arrived
once. These finders judge the consumed and produced records only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from offsetlab.lab.findings import Finding, finder

__all__ = ["exactly_once", "consumed_split"]


@finder("every message consumed exactly once")
def exactly_once(produced: Iterable[tuple[int, int]], consumed: Iterable[tuple[int, int]]) -> Finding:
    """``(partition, offset)`` pairs: each produced pair consumed once, nothing else."""
    sent, got = sorted(produced), sorted(consumed)
    dupes = len(got) - len(set(got))
    missing = sorted(set(sent) - set(got))
    return Finding("every message consumed exactly once", got == sent,
                   rule="consumed (partition, offset) pairs == produced, once each",
                   measured={"produced": len(sent), "consumed": len(got), "duplicates": dupes,
                             "missing": len(missing)})


@finder("members that consumed messages", "partitions each member consumed from (sorted counts)",
        "a partition was consumed by two members")
def consumed_split(consumed: Iterable[tuple[str, int]]) -> list[Finding]:
    """``(member, partition)`` of every consumed record: how the work was split in fact."""
    by_member: dict[str, set[int]] = {}
    by_partition: dict[int, set[str]] = {}
    for member, partition in consumed:
        by_member.setdefault(member, set()).add(partition)
        by_partition.setdefault(partition, set()).add(member)
    shared: list[Any] = sorted(p for p, ms in by_partition.items() if len(ms) > 1)
    return [Finding("members that consumed messages", len(by_member)),
            Finding("partitions each member consumed from (sorted counts)",
                    sorted(len(ps) for ps in by_member.values())),
            Finding("a partition was consumed by two members", bool(shared), measured=shared)]
