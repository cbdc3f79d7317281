"""The chaos run's accounting: pure functions from what was recorded (the publisher's
acknowledgements, the processed counts, the records read back from the broker) to the
numbers and verdicts the run prints and exits on. Each has unit tests on hand-made data
that show it coming out both ways (``tests/unit/test_chaos_accounting.py``). They are not
``@finder``s: no notebook prints them, the command does.

**Processed and duplicated** (:func:`count_processing`). An *input record* is a record the
publisher wrote to the main topic (no provenance headers; retry copies carry them). A seq is
processed when the sink holds it at least once; the extra deliveries of a seq are its
processed count beyond its input records (``max(1, inputs)``): a seq the publisher wrote
twice is processed twice without being a duplicate (it is reported apart, as *written
twice*). ``duplicated`` is the sum of the extra deliveries.

**The duplicate bound** (:func:`duplicate_bound`). At-least-once modes redeliver what a
member handled and did not commit. A member never holds more than one poll batch
(``max_poll_records``, 500) handled and uncommitted: the bus commits at the end of every
batch, after its copies were acknowledged. So each *disruption* can redeliver at most one
batch per member, and each redelivered record yields at most one extra processing (if it
had failed, its retry copy and its redelivery are processed once each). Disruptions:

- a consumer SIGKILL: the victim's batch, then up to two rebalances (the replacement
  joins; the dead member's session expires), in each of which every live member's batch
  can be redelivered (its commit refused because the group rebalanced): ``1 + (W-1) + W
  = 2W`` batches;
- a broker kill or restart: every member's batch once when its commit or its copies fail,
  and once more in the rejoin that follows when the group coordinator moved: ``2W``.

So ``B = 2 x (kills + broker kills + broker restarts) x W x 500``, from the faults the run
*did* (its recorded actions), not the ones it was asked for. In the transactional mode
with ``--sink topic`` every effect the count sees is inside Kafka (the output events and the
consumed offsets commit in one transaction), so the bound is 0.

**Dead letters** (:func:`check_dead_letters`). Every poison seq must be in the dead-letter
topic, with provenance headers naming an input record (original topic, partition, offset)
that holds that seq. A non-poison seq there, or a provenance that points elsewhere, fails the
run. The same source record dead-lettered twice is a redelivery (the member wrote the dead
letter and died before its commit): in at-least-once modes it counts toward ``duplicated``;
in the transactional mode (the dead letter and the commit are one transaction) it fails the
run. One dead letter per input record: a poison seq the publisher wrote twice has two.

**Committed at the end** (:func:`committed_at_end`): for every partition the group consumed,
no data record at or after its committed offset (read with a read_committed consumer, so
transaction markers and aborted records do not count); a partition the group never
committed counts from offset 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Processing", "count_processing", "duplicate_bound", "DeadLetter", "DeadLetterCheck",
           "check_dead_letters", "committed_at_end", "Verdicts", "run_failures"]


@dataclass(frozen=True)
class Processing:
    processed: int
    lost: int
    lost_sample: list[int]
    duplicated: int
    duplicated_events: int
    #: deliveries beyond the first of every processed seq (the old ``redeliveries``)
    redeliveries: int
    written_twice: int
    processed_unacknowledged: int
    poison_processed: int


def count_processing(acked: Iterable[int], counts: Mapping[int, int], inputs: Mapping[int, int],
                     poison: Iterable[int] = ()) -> Processing:
    """``acked``: seqs whose publish returned; ``counts``: times each seq was processed
    (the sink); ``inputs``: input records per seq on the main topic; ``poison``: seqs whose
    handler always rejects (expected unprocessed)."""
    acked_set, poison_set = set(acked), set(poison)
    seen = {s for s, n in counts.items() if n > 0}
    wanted = acked_set - poison_set
    lost = sorted(wanted - seen)
    extra = {s: counts[s] - max(1, inputs.get(s, 0)) for s in seen}
    return Processing(
        processed=len(wanted & seen), lost=len(lost), lost_sample=lost[:20],
        duplicated=sum(n for n in extra.values() if n > 0),
        duplicated_events=sum(1 for s in seen if counts[s] > 1),
        redeliveries=sum(counts[s] - 1 for s in seen),
        written_twice=sum(1 for n in inputs.values() if n > 1),
        processed_unacknowledged=len(seen - acked_set),
        poison_processed=len(seen & poison_set))


def duplicate_bound(*, kills: int, broker_kills: int, broker_restarts: int, workers: int,
                    poll_batch: int, exactly_once: bool = False) -> tuple[int, str]:
    """The duplicate bound and its reason (see the module docstring)."""
    if exactly_once:
        return 0, "exactly once: the outputs and the consumed offsets commit together"
    faults = kills + broker_kills + broker_restarts
    return (2 * faults * workers * poll_batch,
            f"2 x (kills {kills} + broker kills {broker_kills} + broker restarts "
            f"{broker_restarts}) x workers {workers} x batch {poll_batch}")


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter read back: its seq and where its provenance says it came from."""

    seq: int
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None


@dataclass
class DeadLetterCheck:
    #: distinct poison seqs found in the dead-letter topic
    found: int = 0
    expected: int = 0
    #: dead letters of a source record beyond its first
    again: int = 0
    problems: list[str] = field(default_factory=list)


def check_dead_letters(letters: Sequence[DeadLetter], *, poison: Iterable[int], main_topic: str,
                       inputs_at: Mapping[tuple[int, int], int],
                       exactly_once: bool) -> DeadLetterCheck:
    """``inputs_at``: (partition, offset) of each input record on ``main_topic`` -> its seq."""
    poison_set = set(poison)
    check = DeadLetterCheck(expected=len(poison_set))
    sources: Counter[tuple[str | None, int | None, int | None]] = Counter()
    strangers: set[int] = set()
    misplaced: list[str] = []
    found: set[int] = set()
    for d in letters:
        if d.seq not in poison_set:
            strangers.add(d.seq)
            continue
        found.add(d.seq)
        source = (d.original_topic, d.original_partition, d.original_offset)
        sources[source] += 1
        held = (inputs_at.get((d.original_partition, d.original_offset))
                if d.original_topic == main_topic and d.original_partition is not None
                and d.original_offset is not None else None)
        if held != d.seq:
            misplaced.append(f"seq {d.seq} <- {d.original_topic}[{d.original_partition}]@"
                             f"{d.original_offset} (holds {held})")
    check.found = len(found)
    check.again = sum(n - 1 for n in sources.values())
    if strangers:
        check.problems.append(f"{len(strangers)} non-poison seqs in the dead-letter topic "
                              f"(first: {sorted(strangers)[:10]})")
    if misplaced:
        check.problems.append(f"{len(misplaced)} dead letters whose provenance does not point "
                              f"at an input record of their seq (first: {misplaced[:5]})")
    if check.again and exactly_once:
        check.problems.append(f"{check.again} dead letters written again for the same source "
                              "record in the transactional mode")
    missing = sorted(poison_set - found)
    if missing:
        check.problems.append(f"{len(missing)} poison seqs not dead-lettered "
                              f"(first: {missing[:10]})")
    return check


def committed_at_end(committed: Mapping[tuple[str, int], int | None],
                     records_after: Mapping[tuple[str, int], Sequence[int]]) -> tuple[bool, list[str]]:
    """``committed``: the group's committed offset of every partition it consumed (None:
    never committed); ``records_after``: offsets of the data records read at or after it.
    True when no partition has any; the detail names those that do."""
    detail = []
    for tp in sorted(committed):
        after = records_after.get(tp, ())
        if after:
            detail.append(f"{tp[0]}[{tp[1]}]: committed {committed[tp]}, {len(after)} records "
                          f"at or after it (first offset {min(after)})")
    return not detail, detail


@dataclass(frozen=True)
class Verdicts:
    """The numbers the exit status is decided on."""

    lost: int
    unacknowledged: int
    allow_unacked: bool
    duplicated: int
    bound: int
    dead_lettered: int
    dead_letters_expected: int
    dead_letter_problems: Sequence[str]
    poison_processed: int
    committed_at_end: bool | None


def run_failures(v: Verdicts) -> list[str]:
    """Why the run fails; empty: it passes (exit status 0)."""
    out = []
    if v.lost:
        out.append(f"lost {v.lost}")
    if v.unacknowledged and not v.allow_unacked:
        out.append(f"unacknowledged {v.unacknowledged} (--allow-unacked to accept)")
    if v.duplicated > v.bound:
        out.append(f"duplicated {v.duplicated} over the bound {v.bound}")
    if v.dead_lettered != v.dead_letters_expected or v.dead_letter_problems:
        out.append(f"dead-lettered {v.dead_lettered} (expected {v.dead_letters_expected})"
                   + "".join(f"; {p}" for p in v.dead_letter_problems))
    if v.poison_processed:
        out.append(f"{v.poison_processed} poison events counted as processed")
    if v.committed_at_end is not True:
        out.append("committed offsets are not at the end of what the group consumed"
                   if v.committed_at_end is False else "committed offsets not checked")
    return out
