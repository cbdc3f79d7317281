"""E10's finders: what the producers, the topics read back, the consumer group and the brokers'
logs recorded when a partition's leader died (:mod:`.e10_failover`).

Each takes plain recorded data (lists of sends with their times, what was read back, log
events), not a :class:`~.e10_failover.FailoverRun`, so the tests can hand-make it;
:func:`findings` gathers them from a run in the notebook's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from offsetlab.lab.findings import Finding, finder

__all__ = ["LOST", "TWICE", "FROZEN_ACKS", "PRODUCER_IDS", "COORDINATOR", "REBALANCES", "MISSED",
           "RETRY_AFTER", "RETRY_ONCE", "lost", "written_twice", "acked_while_frozen",
           "producer_ids", "coordinator_moved", "rebalances", "missed", "retry_after_leader",
           "retry_once", "findings"]

LOST = "{}: acknowledged records lost after the leader died"
TWICE = "{}: records written twice"
FROZEN_ACKS = "{}: sends made while the followers were frozen, acknowledged before the kill"
PRODUCER_IDS = "{}: record batches in the new leader's log with a producer id"
COORDINATOR = "the group's coordinator moved off the killed node"
REBALANCES = "consumer group: rebalances between the kill and the end of writing"
MISSED = "consumer group: acknowledged acks=all events never delivered"
RETRY_AFTER = "the retry copy waiting when the leader died was delivered after the new leader took over"
RETRY_ONCE = "the retry copy was handled exactly once"


@finder(LOST)
def lost(setting: str, acked: Iterable[int], read_back: Iterable[int]) -> Finding:
    """``acked``: the seqs the producer had acknowledged; ``read_back``: the seqs in the topic
    read back from the surviving nodes."""
    have = set(read_back)
    gone = sorted(set(acked) - have)
    return Finding(LOST.format(setting), bool(gone), rule="acknowledged and not read back > 0",
                   measured={"lost": len(gone), "acknowledged": len(set(acked)), "seqs": gone})


@finder(TWICE)
def written_twice(setting: str, read_back: Iterable[tuple[int, int]]) -> Finding:
    """``read_back``: (seq, attempt) of every record; a seq the producer's own records (attempt
    1: retry copies are the bus's) hold more than once was written twice."""
    counts: dict[int, int] = {}
    for seq, attempt in read_back:
        if attempt == 1:
            counts[seq] = counts.get(seq, 0) + 1
    twice = sorted(s for s, n in counts.items() if n > 1)
    return Finding(TWICE.format(setting), bool(twice), rule="seqs with > 1 record (attempt 1) > 0",
                   measured={"seqs": twice})


@finder(FROZEN_ACKS)
def acked_while_frozen(setting: str, sends: Iterable[tuple[float, float | None]], write: float,
                       kill: float) -> Finding:
    """``sends``: ``(sent_at, acked_at)``. Any send made in the writing window (the followers
    frozen since before it began) acknowledged before the leader's kill. A send made before
    the freeze does not count, even if its acknowledgement came after it: the followers may
    have fetched it before they were frozen (a CI run under load printed True for acks=all
    that way when acknowledgements were counted from the freeze on)."""
    times = [a for t, a in sends if write <= t <= kill and a is not None and a <= kill]
    return Finding(FROZEN_ACKS.format(setting), bool(times),
                   rule="sends in [write, kill] acknowledged before kill > 0",
                   measured={"acknowledged": len(times), "window_s": round(kill - write, 2)})


@finder(PRODUCER_IDS)
def producer_ids(setting: str, ids: Sequence[int]) -> Finding:
    """``ids``: the producer id of every record batch of the topic in the new leader's log
    (``DumpLogSegments``; -1 = none): ``all``, ``none``, ``some`` or ``no batches``."""
    with_id = sum(1 for i in ids if i >= 0)
    value = ("no batches" if not ids else "all" if with_id == len(ids) else
             "none" if with_id == 0 else "some")
    return Finding(PRODUCER_IDS.format(setting), value, rule="batches with producerId >= 0 of all",
                   measured={"batches": len(ids), "with a producer id": with_id,
                             "producer ids": sorted(set(ids))})


@finder(COORDINATOR)
def coordinator_moved(killed: int, before: Sequence[int], after: Sequence[int]) -> Finding:
    """``before`` / ``after``: the nodes whose logs hold GroupCoordinator lines about the group
    before / after the kill; the coordinator moved if it was the killed node before and
    another node after."""
    moved = killed in before and bool(after) and killed not in after
    return Finding(COORDINATOR, moved, rule="killed node coordinated before, another after",
                   measured={"killed": killed, "before": sorted(set(before)), "after": sorted(set(after))})


@finder(REBALANCES)
def rebalances(times: Iterable[float | None], kill: float, stop: float) -> Finding:
    """``times``: the group's ``Preparing to rebalance`` lines in every node's log."""
    n = sum(1 for t in times if t is not None and kill <= t <= stop)
    return Finding(REBALANCES, n, rule="rebalance lines in [kill, stop]", measured=n)


@finder(MISSED)
def missed(acked: Iterable[int], delivered: Iterable[int]) -> Finding:
    gone = sorted(set(acked) - set(delivered))
    return Finding(MISSED, len(gone), rule="acknowledged acks=all seqs the handler never got",
                   measured={"seqs": gone})


@finder(RETRY_AFTER)
def retry_after_leader(delivered_at: float | None, kill: float, leader_at: float | None,
                       due: float | None) -> Finding:
    """The retry copy's delivery came after the partition's new leader started (the survivor's
    log line), not from the consumer's memory at its due time. ``None`` when the copy waited
    for a due time outside (kill, new leader), where the question does not arise: it says
    ``not measured`` then."""
    if delivered_at is None or leader_at is None or due is None or not kill < due < leader_at:
        value: Any = "not measured"
    else:
        value = delivered_at > leader_at
    return Finding(RETRY_AFTER, value, rule="delivered_at > new leader (due in (kill, new leader))",
                   measured={"due_after_kill_s": None if due is None else round(due - kill, 2),
                             "new_leader_after_kill_s": None if leader_at is None else round(leader_at - kill, 2),
                             "delivered_after_kill_s": None if delivered_at is None
                             else round(delivered_at - kill, 2)})


@finder(RETRY_ONCE)
def retry_once(calls: Iterable[int]) -> Finding:
    """``calls``: the call numbers of the failing event's handler calls (1 = its first
    delivery); the copy (call 2) must come once and nothing after it."""
    ns = sorted(calls)
    return Finding(RETRY_ONCE, ns == [1, 2], rule="the failing event's handler calls == [1, 2]",
                   measured={"calls": ns})


def findings(run: Any) -> list[Finding]:
    """Every E10 finding of a :class:`~.e10_failover.FailoverRun`, in the notebook's order."""
    from .e10_failover import SETTINGS

    ev = run.events
    out = []
    for s in SETTINGS:
        sent = run.sent(s)
        out.append(acked_while_frozen(s, [(x.sent_at, x.acked_at) for x in sent], ev["write"],
                                      ev["kill"]))
        out.append(lost(s, [x.seq for x in sent if x.acked_at is not None],
                        [seq for seq, _ in run.read_back[s]]))
        out.append(written_twice(s, run.read_back[s]))
        out.append(producer_ids(s, run.batches.get(s, [])))
    out.append(coordinator_moved(run.leader, [c["node"] for c in run.coordinators if c["at"] < ev["kill"]],
                                 [c["node"] for c in run.coordinators if c["at"] > ev["kill"]]))
    out.append(rebalances([e.at for e in run.group_log if e.kind == "rebalance"], ev["kill"], ev["stop"]))
    out.append(missed([x.seq for x in run.sent("acks=all") if x.acked_at is not None],
                      [seq for _, seq, _ in run.deliveries]))
    out.append(retry_after_leader(run.retry_delivered_at, ev["kill"], run.new_leader_at("acks=all"),
                                  run.retry_due))
    out.append(retry_once([n for _, seq, n in run.deliveries if seq == run.params.fail_seq]))
    return out
