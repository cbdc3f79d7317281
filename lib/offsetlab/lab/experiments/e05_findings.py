"""E05's findings as finders (:mod:`offsetlab.lab.findings`); E06 uses the fail03 ones too.

Each finder takes plain recorded data (the deliveries read back from a topic, the handler's
recorded calls, an outcome dict, dead letters' decoded headers, the copy-then-commit window's
runs) and judges it; none talks to a broker. Deliveries are counted from the topics: every
record of a message on the topics its handler reads is one delivery (the original, attempt 1,
and each copy with its attempt header); the handler's recorded calls are the second source.
The outage's findings are in :mod:`~offsetlab.lab.experiments.outage_findings`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from offsetlab.lab.findings import Finding, finder

__all__ = ["deliveries", "exhausted", "processing_order", "dead_lettered", "lost",
           "restart_began", "lost_duplicated", "bus_outcome", "committed_at_end",
           "dead_letter_provenance", "window_copies", "window_processed",
           "window_others_twice", "window_lost"]


@finder("{}: deliveries per message, read from the {}",
        "{}: handler calls per message == deliveries read from the {}")
def deliveries(name: str, read: Mapping[int, Sequence[int]], calls: Mapping[int, int], *,
               where: str = "topic") -> list[Finding]:
    """``read``: seq -> attempt numbers of its records on the topic(s) its handler reads;
    ``calls``: seq -> handler calls recorded."""
    from_topic = {int(s): len(a) for s, a in sorted(read.items())}
    return [
        Finding(f"{name}: deliveries per message, read from the {where}", from_topic,
                rule="records per message on the handled topic(s), original and copies",
                measured={int(s): list(a) for s, a in read.items()}),
        Finding(f"{name}: handler calls per message == deliveries read from the {where}",
                from_topic == {int(s): int(n) for s, n in sorted(calls.items())},
                rule="the handler's recorded calls per message equal the records read back",
                measured={"calls": {int(s): int(n) for s, n in calls.items()}}),
    ]


@finder("{}: message {} delivered max_retries + 1 times [read from the {}, handler calls]")
def exhausted(name: str, seq: int, read: Mapping[int, Sequence[int]], calls: Mapping[int, int],
              max_retries: int, *, where: str = "topic") -> Finding:
    """Whether a message that kept failing got exactly ``max_retries + 1`` deliveries, by the
    records on the topic(s) (their attempt numbers 1..n) and by the handler's calls."""
    attempts = sorted(read.get(seq, ()))
    by_topic = attempts == list(range(1, max_retries + 2))
    return Finding(f"{name}: message {seq} delivered max_retries + 1 times "
                   f"[read from the {where}, handler calls]",
                   [by_topic, int(calls.get(seq, 0)) == max_retries + 1],
                   rule=f"attempt numbers on the {where} == 1..{max_retries + 1}; handler calls "
                        f"== {max_retries + 1}",
                   measured={"attempts read": attempts, "calls": int(calls.get(seq, 0))})


@finder("raw {}: processing order")
def processing_order(name: str, order: Sequence[int]) -> Finding:
    return Finding(f"raw {name}: processing order", [int(s) for s in order],
                   rule="seq of every successful handler call, in call order")


@finder("raw {}: dead-lettered")
def dead_lettered(name: str, seqs: Sequence[int]) -> Finding:
    return Finding(f"raw {name}: dead-lettered", sorted(int(s) for s in seqs),
                   rule="seqs read back from the dead-letter topic")


@finder("raw {}: lost")
def lost(name: str, outcome: Mapping[str, Any]) -> Finding:
    return Finding(f"raw {name}: lost", list(outcome["lost"]),
                   rule="produced, never processed, not in the dead-letter topic")


@finder("raw {}: restart began at [the crashed record, the one before]")
def restart_began(name: str, crashed_offsets: Sequence[int],
                  first_after_restart: Sequence[int]) -> Finding:
    """``crashed_offsets``: offsets of the deliveries the consumer crashed on;
    ``first_after_restart``: the first offset each restarted consumer was handed."""
    first, crashed = list(first_after_restart[:1]), list(crashed_offsets)
    return Finding(f"raw {name}: restart began at [the crashed record, the one before]",
                   [bool(first and crashed and first[0] == crashed[0]),
                    bool(first and crashed and first[0] == crashed[0] - 1)],
                   measured={"crashed at": crashed, "first after restart": first})


@finder("raw {}: [lost, duplicated]")
def lost_duplicated(name: str, outcome: Mapping[str, Any]) -> Finding:
    return Finding(f"raw {name}: [lost, duplicated]", [list(outcome["lost"]),
                                                      list(outcome["duplicated"])])


@finder("bus {}: [lost, duplicated, dead-lettered]")
def bus_outcome(name: str, outcome: Mapping[str, Any]) -> Finding:
    return Finding(f"bus {name}: [lost, duplicated, dead-lettered]",
                   [list(outcome["lost"]), list(outcome["duplicated"]),
                    list(outcome["dead-lettered"])])


@finder("{}: committed == end of topic", "{}: committed == end of main and retry topic",
        "{}: main and retrier committed == end of their topics")
def committed_at_end(name: str, committed: Mapping[str, int | None], ends: Mapping[str, int], *,
                     what: str = "topic") -> Finding:
    """``committed``/``ends``: per topic, the group's committed position and the end offset
    read back from the broker. ``what``: ``topic``, ``main and retry topic`` or
    ``their topics`` (E06's raw main consumer and retrier)."""
    ok = all(committed.get(t) == end for t, end in ends.items())
    label = (f"{name}: main and retrier committed == end of their topics" if what == "their topics"
             else f"{name}: committed == end of {what}")
    return Finding(label, ok, rule="committed position == end offset, every topic",
                   measured={"committed": dict(committed), "end": dict(ends)})


@finder("bus poison: dead letter [attempt header, original offset]")
def dead_letter_provenance(dead_letters: Sequence[tuple[int, Any]]) -> Finding:
    return Finding("bus poison: dead letter [attempt header, original offset]",
                   [[p.attempt, p.original_offset] for _, p in dead_letters])


# -- the copy-then-commit window (lab.experiments.e05_window) ---------------------------------
def _window(runs: Mapping[tuple[str, bool], Any], mode: str) -> tuple[Any, Any]:
    return runs[(mode, False)], runs[(mode, True)]


@finder("copy-then-commit window, {}: copies of message {} on the main topic, attempt headers "
        "[no kill, killed]")
def window_copies(runs: Mapping[tuple[str, bool], Any], mode: str) -> Finding:
    """The copies (attempt >= 2) of the failing message read back from the main topic, in
    the control and in the run killed between the copy's acknowledgement and the commit."""
    control, killed = _window(runs, mode)
    return Finding(f"copy-then-commit window, {mode}: copies of message {control.fail_seq} on "
                   "the main topic, attempt headers [no kill, killed]",
                   [control.copies(), killed.copies()],
                   rule="records of the failing message with attempt >= 2, read back")


@finder("copy-then-commit window, {}: message {} processed [no kill, killed]")
def window_processed(runs: Mapping[tuple[str, bool], Any], mode: str) -> Finding:
    control, killed = _window(runs, mode)
    seq = control.fail_seq
    return Finding(f"copy-then-commit window, {mode}: message {seq} processed [no kill, killed]",
                   [control.processed().get(seq, 0), killed.processed().get(seq, 0)],
                   rule="successful handler calls recorded by the workers")


@finder("copy-then-commit window, {}: other messages processed twice after the kill")
def window_others_twice(runs: Mapping[tuple[str, bool], Any], mode: str) -> Finding:
    """Messages other than the failing one that the killed run processed more than once (the
    records the killed worker had handled and not committed)."""
    _, killed = _window(runs, mode)
    again = sorted(s for s, n in killed.processed().items() if n > 1 and s != killed.fail_seq)
    return Finding(f"copy-then-commit window, {mode}: other messages processed twice after the kill",
                   again, rule="seq != the failing message, successful handler calls > 1",
                   measured=killed.processed())


@finder("copy-then-commit window, {}: lost [no kill, killed]")
def window_lost(runs: Mapping[tuple[str, bool], Any], mode: str) -> Finding:
    control, killed = _window(runs, mode)
    return Finding(f"copy-then-commit window, {mode}: lost [no kill, killed]",
                   [sorted(set(range(r.n_messages)) - set(r.processed())) for r in (control, killed)],
                   rule="produced, never processed by any worker")
