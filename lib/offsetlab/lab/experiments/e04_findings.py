"""E04's findings: each one a finder over the recorded results (no broker here).

- per commit mode (:class:`~offsetlab.lab.experiments.e03_scenario.ScenarioResult`): what was
  lost and what was processed twice; whether skipping loses the failure; where the restart
  starts for ``offset`` and ``offset + 1``; the runner after a handler exception;
- the kill case (:class:`~offsetlab.lab.experiments.e04_kill.KillCase`): what the restart
  re-processed and lost after a SIGKILL between processing and commit, per commit style, and
  whether the runner's "nothing twice" holds for a kill;
- the ``max_poll_records`` sweep (:class:`~offsetlab.lab.experiments.e04_max_poll.MaxPollCase`):
  whether the broker removed the member during the run and why (its log), whether records
  were handled more than once, which commit errors the consumer saw.
"""

from __future__ import annotations

from collections.abc import Sequence

from offsetlab.lab.experiments.e03_scenario import ScenarioResult
from offsetlab.lab.experiments.e04_kill import KillCase
from offsetlab.lab.experiments.e04_max_poll import MaxPollCase, removals
from offsetlab.lab.findings import Finding, finder

__all__ = ["mode_outcome", "skip_loses", "offset_restarts_at_last", "offset1_rereads_nothing",
           "runner_exception_clean", "runner_restart_starts_at", "kill_outcome",
           "runner_kill_vs_exception", "max_poll_removed", "max_poll_duplicates",
           "max_poll_commit_errors", "max_poll_contrast", "max_poll_progress"]


@finder("commit {}: lost", "commit {}: processed twice", "runner, handler raises: lost",
        "runner, handler raises: processed twice")
def mode_outcome(result: ScenarioResult) -> list[Finding]:
    """The messages a mode lost (never processed, behind the committed position read back
    from the broker) and processed more than once."""
    return [Finding(f"{result.name}: lost", result.lost(),
                    rule="never processed and behind the committed position"),
            Finding(f"{result.name}: processed twice", result.duplicated(),
                    rule="processed more than once")]


@finder("skipping a failure loses it, whatever is committed")
def skip_loses(skips: Sequence[ScenarioResult], fail_message: int) -> Finding:
    """True when the failed message is lost in every ``skip`` mode."""
    lost = {r.name: r.lost() for r in skips}
    return Finding("skipping a failure loses it, whatever is committed",
                   bool(skips) and all(fail_message in v for v in lost.values()),
                   rule=f"message {fail_message} in lost() of every skip mode", measured=lost)


def _first_consumer_processed(r: ScenarioResult) -> list[int]:
    return [n for a in r.attempts if a.who == "consumer" for n in a.processed]


@finder("commit offset: the restart starts at the last message processed before it")
def offset_restarts_at_last(offset_modes: Sequence[ScenarioResult]) -> Finding:
    """With ``commit(offset)`` the restarted consumer's first record is the last message
    the first consumer processed (in every given mode)."""
    seen = {r.name: ((r.restart_delivered or (None,))[0],
                     (_first_consumer_processed(r) or [None])[-1]) for r in offset_modes}
    return Finding("commit offset: the restart starts at the last message processed before it",
                   bool(seen) and all(a is not None and a == b for a, b in seen.values()),
                   rule="restart's first message == first consumer's last processed",
                   measured={k: list(v) for k, v in seen.items()})


@finder("commit offset+1: the restart re-reads nothing it had processed")
def offset1_rereads_nothing(plus1_modes: Sequence[ScenarioResult]) -> Finding:
    dup = {r.name: r.duplicated() for r in plus1_modes}
    return Finding("commit offset+1: the restart re-reads nothing it had processed",
                   bool(dup) and not any(dup.values()), rule="duplicated() == [] in every offset+1 mode",
                   measured=dup)


@finder("runner, handler raises: lost == 0 and processed twice == 0")
def runner_exception_clean(result: ScenarioResult) -> Finding:
    return Finding("runner, handler raises: lost == 0 and processed twice == 0",
                   not result.lost() and not result.duplicated(),
                   measured={"lost": result.lost(), "processed twice": result.duplicated()})


@finder("runner, handler raises: the restarted consumer starts at message")
def runner_restart_starts_at(result: ScenarioResult) -> Finding:
    """The first message the runner's restarted consumer (after the crash) was handed."""
    first = next((a.delivered[0] for a in result.attempts if a.who != "runner" and a.delivered), None)
    return Finding("runner, handler raises: the restarted consumer starts at message", first)


@finder("killed after processing message {} before its commit, {}: re-processed by the restart",
        "killed after processing message {} before its commit, {}: lost")
def kill_outcome(case: KillCase) -> list[Finding]:
    """What the consumer restarted after the SIGKILL processed again, and what no consumer
    processed (from the two processes' records)."""
    head = f"killed after processing message {case.kill_after} before its commit, {case.style}"
    return [Finding(f"{head}: re-processed by the restart", case.reprocessed(),
                    rule="processed by the killed worker and by the restart",
                    measured={"killed": case.killed_processed, "restart": case.restart_processed,
                              "committed position at the kill": case.committed_at_kill}),
            Finding(f"{head}: lost", case.lost(), rule="processed by neither")]


@finder("runner: nothing processed twice after a handler exception, but after a kill")
def runner_kill_vs_exception(exception: ScenarioResult, kill: KillCase) -> Finding:
    """True when the runner processed nothing twice after a handler exception and the kill
    made its restart process something again: "nothing twice" is about exceptions only."""
    return Finding("runner: nothing processed twice after a handler exception, but after a kill",
                   not exception.duplicated() and bool(kill.reprocessed()),
                   rule="exception: duplicated() == []; kill: re-processed != []",
                   measured={"exception": exception.duplicated(), "kill": kill.reprocessed()})


def _removed(case: MaxPollCase) -> str:
    if not case.log_read:
        return "not read (no Kafka broker log)"
    kinds = sorted({k for _, k in removals(case.broker_lines)})
    return "not removed" if not kinds else " and ".join(f"by {k}" for k in kinds)


def _agreed(values: Sequence[str]) -> str:
    distinct = sorted(set(values))
    return distinct[0] if len(distinct) == 1 else f"differs between repeats: {distinct}"


@finder("max_poll_records {}: removed from the group during the run (broker log)")
def max_poll_removed(cases: Sequence[MaxPollCase]) -> Finding:
    """How the broker's log says the member left the group during each repeat of one
    setting: ``by LeaveGroup`` (the client left, as kafka-python's heartbeat thread does when
    poll() is late), ``by session timeout`` (heartbeats stopped), or ``not removed``; the
    value when every repeat agrees, else ``differs between repeats: [...]``. The consumer's
    own LeaveGroup when it closed at the end is not counted
    (:func:`~offsetlab.lab.experiments.e04_max_poll.removals`)."""
    n = cases[0].max_poll_records
    return Finding(f"max_poll_records {n}: removed from the group during the run (broker log)",
                   _agreed([_removed(c) for c in cases]),
                   rule="broker log: a rebalance for LeaveGroup / expiry followed by a new generation",
                   measured={"removals per repeat": [removals(c.broker_lines) for c in cases],
                             "longest batch s per repeat": [round(max(c.batch_seconds(), default=0), 2)
                                                            for c in cases],
                             "max_poll_interval_s": cases[0].max_poll_interval_ms / 1000})


@finder("max_poll_records {}: repeats with records handled more than once")
def max_poll_duplicates(cases: Sequence[MaxPollCase]) -> Finding:
    """In how many repeats of one setting some record was handled more than once."""
    n = cases[0].max_poll_records
    hits = sum(1 for c in cases if c.duplicates() > 0)
    return Finding(f"max_poll_records {n}: repeats with records handled more than once",
                   f"{hits} of {len(cases)}", rule="handlings beyond the first > 0, per repeat",
                   measured=[c.duplicates() for c in cases])


@finder("max_poll_records {}: commit errors")
def max_poll_commit_errors(cases: Sequence[MaxPollCase]) -> Finding:
    """The exception classes the batch commits raised in any repeat (sorted, each once)."""
    n = cases[0].max_poll_records
    return Finding(f"max_poll_records {n}: commit errors",
                   sorted({x for c in cases for _, x in c.commits if x != "ok"}),
                   measured={"commits": [len(c.commits) for c in cases],
                             "failed": [sum(1 for _, x in c.commits if x != "ok") for c in cases]})


@finder("max_poll: only the setting whose batches outlast max_poll_interval_ms got the member removed")
def max_poll_contrast(short: Sequence[MaxPollCase], long: Sequence[MaxPollCase]) -> Finding:
    """True when every repeat of the ``long`` setting (longest batch > max_poll_interval_ms,
    measured) was removed during the run and no repeat of the ``short`` one was (broker log)."""
    interval = short[0].max_poll_interval_ms / 1000
    longest = {"short": [max(c.batch_seconds(), default=0.0) for c in short],
               "long": [max(c.batch_seconds(), default=0.0) for c in long]}
    ok: bool | str = (all(x < interval for x in longest["short"])
                      and all(x > interval for x in longest["long"])
                      and all(_removed(c) == "not removed" for c in short)
                      and all(_removed(c).startswith("by ") for c in long))
    if not all(c.log_read for c in (*short, *long)):
        ok = _removed(next(c for c in (*short, *long) if not c.log_read))
    return Finding("max_poll: only the setting whose batches outlast max_poll_interval_ms got the "
                   "member removed", ok,
                   rule=f"short: longest batch < {interval} s and not removed; long: longest batch > "
                        f"{interval} s and removed (broker log), in every repeat",
                   measured={k: [round(x, 2) for x in v] for k, v in longest.items()})


@finder("max_poll_records {}: repeats that committed the topic's end within the budget")
def max_poll_progress(cases: Sequence[MaxPollCase]) -> Finding:
    """In how many repeats the group's committed position, read back from the broker after
    the run, reached the end of the topic (every record handled and its commit kept)."""
    n = cases[0].max_poll_records
    hits = sum(1 for c in cases if c.committed_end == c.n_messages)
    return Finding(f"max_poll_records {n}: repeats that committed the topic's end within the budget",
                   f"{hits} of {len(cases)}", rule="committed offset read back == end offset",
                   measured=[c.committed_end for c in cases])
