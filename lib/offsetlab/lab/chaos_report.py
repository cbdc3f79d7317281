"""The chaos run's result: filling :class:`~offsetlab.lab.chaos_config.ChaosResult` from what
was recorded and read back (:func:`account`, through the pure functions of
:mod:`~offsetlab.lab.chaos_accounting`), and its printed lines (:func:`report`)::

    produced: 10000            distinct events on the main topic, read back
    acknowledged: 10000        events whose publish call returned
    unacknowledged: 0          events the publisher gave up on (fails the run unless allowed)
    processed: 9980            acknowledged, non-poison events processed at least once
    lost: 0                    acknowledged, non-poison, never processed
    duplicated: 212 (...)      extra deliveries per input record, with the bound checked
    dead-lettered: 20 (expected 20)
    committed == end offsets: true
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from .chaos_accounting import (
    DeadLetter,
    Verdicts,
    check_dead_letters,
    committed_at_end,
    count_processing,
    duplicate_bound,
    run_failures,
)
from .chaos_config import POLL_BATCH, ChaosConfig, ChaosResult

__all__ = ["account", "report", "actions_done"]


def actions_done(result: ChaosResult, kind: str) -> int:
    """Faults of ``kind`` the run did (an action with an error was not done)."""
    return sum(1 for a in result.actions if a["action"] == kind and "error" not in a)


def account(result: ChaosResult, config: ChaosConfig, *, acked: Iterable[int],
            counts: Mapping[int, int], inputs: Mapping[int, int],
            inputs_at: Mapping[tuple[int, int], int], poison: Iterable[int],
            dead_letters: Sequence[DeadLetter], main_topic: str,
            committed: Mapping[tuple[str, int], int | None],
            after: Mapping[tuple[str, int], Sequence[int]],
            calls: Mapping[str, int]) -> None:
    """Fill ``result`` from the records; ``calls``: handler calls per kind from the
    workers' files (``ok``, ``fail``, ``rej``)."""
    acked, poison = set(acked), frozenset(poison)
    eos = config.consumer == "bus-eos"
    p = count_processing(acked, counts, inputs, poison)
    result.acknowledged = len(acked)
    result.unacknowledged = config.events - len(acked)
    result.produced = sum(1 for s, n in inputs.items() if n > 0 and s >= 0)
    result.processed, result.lost, result.lost_sample = p.processed, p.lost, p.lost_sample
    result.duplicated_events, result.written_twice = p.duplicated_events, p.written_twice
    result.redeliveries = p.redeliveries
    result.processed_unacknowledged, result.poison_processed = (p.processed_unacknowledged,
                                                                p.poison_processed)
    dl = check_dead_letters(dead_letters, poison=poison, main_topic=main_topic,
                            inputs_at=inputs_at, exactly_once=eos)
    result.dead_lettered, result.dead_letters_expected = dl.found, dl.expected
    result.dead_letters_again, result.dead_letter_problems = dl.again, dl.problems
    result.duplicated = p.duplicated + (0 if eos else dl.again)
    result.duplicate_bound, result.duplicate_bound_reason = duplicate_bound(
        kills=actions_done(result, "kill"), broker_kills=actions_done(result, "broker_kill"),
        broker_restarts=actions_done(result, "broker_restart"), workers=config.workers,
        poll_batch=POLL_BATCH, exactly_once=eos and config.sink == "topic")
    result.committed_at_end, result.committed_detail = committed_at_end(committed, after)
    result.failed_deliveries = calls.get("fail", 0)
    result.rejected_deliveries = calls.get("rej", 0)
    result.handler_calls_ok = calls.get("ok", 0)
    result.failures = run_failures(Verdicts(
        lost=result.lost, unacknowledged=result.unacknowledged,
        allow_unacked=config.allow_unacked, duplicated=result.duplicated,
        bound=result.duplicate_bound, dead_lettered=result.dead_lettered,
        dead_letters_expected=result.dead_letters_expected,
        dead_letter_problems=result.dead_letter_problems,
        poison_processed=result.poison_processed, committed_at_end=result.committed_at_end))
    result.accounted = True


def report(result: ChaosResult, config: ChaosConfig, say: Callable[[str], None]) -> None:
    r = result
    say(f"produced: {r.produced}")
    say(f"acknowledged: {r.acknowledged}")
    say(f"unacknowledged: {r.unacknowledged}"
        + (f" ({r.processed_unacknowledged} processed anyway"
           + ("; allowed by --allow-unacked" if config.allow_unacked else "") + ")"
           if r.unacknowledged or r.processed_unacknowledged else ""))
    say(f"processed: {r.processed}" + (f" (of {r.acknowledged - r.dead_letters_expected} "
                                       "acknowledged non-poison events)" if config.poison else ""))
    say(f"lost: {r.lost}" + (f" (first: {r.lost_sample})" if r.lost else ""))
    again = (f"; dead letters written again {r.dead_letters_again}"
             + (" (counted)" if config.consumer != "bus-eos" else " (fail the run)")
             if r.dead_letters_again else "")
    say(f"duplicated: {r.duplicated} (extra deliveries per input record; events processed more "
        f"than once {r.duplicated_events}; written twice by the publisher {r.written_twice}"
        f"{again}; bound {r.duplicate_bound} = {r.duplicate_bound_reason})")
    say(f"dead-lettered: {r.dead_lettered} (expected {r.dead_letters_expected})")
    for problem in r.dead_letter_problems:
        say(f"  dead letters: {problem}")
    if r.poison_processed:
        say(f"poison processed: {r.poison_processed} (poison events counted as processed)")
    say(f"committed == end offsets: {str(r.committed_at_end).lower()}")
    for line in r.committed_detail[:10]:
        say(f"  {line}")
    if config.fail_rate or config.poison or config.sink == "topic":
        say(f"handler calls: ok {r.handler_calls_ok}, failed {r.failed_deliveries} (retriable, "
            f"fail rate {config.fail_rate:g}), rejected {r.rejected_deliveries} (poison); "
            f"retry {r.retry_strategy}")
    if r.publish_failures:
        say(f"publish: {r.publish_failures} failed publish calls, {r.publisher_rebuilds} new "
            "publish clients (the failures are in chaos.json: publish_failure_log)")
    t = r.timings
    parts = [f"{name} {t[key]:.1f} s" for name, key in
             (("broker start", "broker_start_s"), ("workers joined", "workers_joined_s"),
              ("publish", "publish_s"), ("drain", "drain_s"), ("stop", "stop_workers_s"),
              ("total", "total_s")) if key in t]
    during = sum(1 for a in r.actions if a.get("while_publishing"))
    say(f"timings: {', '.join(parts)}; done: kills {actions_done(r, 'kill')}, broker kills "
        f"{actions_done(r, 'broker_kill')}, broker restarts {actions_done(r, 'broker_restart')} "
        f"({during} of {len(r.actions)} faults while the publisher published)")
    say("result: " + ("pass" if not r.failures else "FAIL: " + "; ".join(r.failures)))
