"""The chaos run's verdicts (``offsetlab.lab.chaos_accounting``) on hand-made data: each
comes out both ways."""

from __future__ import annotations

from collections import Counter

from offsetlab.lab.chaos_accounting import (
    DeadLetter,
    Verdicts,
    check_dead_letters,
    committed_at_end,
    count_processing,
    duplicate_bound,
    run_failures,
)

MAIN = "r.chaos.events"


def test_lost_is_an_acknowledged_non_poison_event_never_processed() -> None:
    acked = {0, 1, 2, 3}
    whole = count_processing(acked, Counter({0: 1, 1: 1, 2: 1}), Counter({0: 1, 1: 1, 2: 1, 3: 1}),
                             poison={3})
    assert (whole.processed, whole.lost) == (3, 0)
    gap = count_processing(acked, Counter({0: 1, 2: 1}), Counter({0: 1, 1: 1, 2: 1, 3: 1}),
                           poison={3})
    assert (gap.processed, gap.lost, gap.lost_sample) == (2, 1, [1])


def test_duplicated_counts_extra_deliveries_beyond_the_input_records() -> None:
    inputs = Counter({0: 1, 1: 2, 2: 1})  # seq 1: the publisher wrote it twice
    once_each = count_processing({0, 1, 2}, Counter({0: 1, 1: 2, 2: 1}), inputs)
    assert (once_each.duplicated, once_each.written_twice, once_each.duplicated_events) == (0, 1, 1)
    redelivered = count_processing({0, 1, 2}, Counter({0: 3, 1: 2, 2: 2}), inputs)
    assert redelivered.duplicated == 3  # seq 0 twice more, seq 2 once more


def test_poison_counted_as_processed_and_processed_unacknowledged() -> None:
    clean = count_processing({0, 1}, Counter({0: 1}), Counter({0: 1, 1: 1}), poison={1})
    assert (clean.poison_processed, clean.processed_unacknowledged) == (0, 0)
    dirty = count_processing({0, 1}, Counter({0: 1, 1: 1, 5: 1}), Counter({0: 1, 1: 1, 5: 1}),
                             poison={1})
    assert (dirty.poison_processed, dirty.processed_unacknowledged) == (1, 1)


def test_duplicate_bound_grows_with_the_faults_done_and_is_zero_exactly_once() -> None:
    calm, why = duplicate_bound(kills=0, broker_kills=0, broker_restarts=0, workers=3, poll_batch=500)
    assert calm == 0 and "kills 0" in why
    busy, why = duplicate_bound(kills=5, broker_kills=2, broker_restarts=0, workers=3, poll_batch=500)
    assert busy == 2 * 7 * 3 * 500 and "broker kills 2" in why
    eos, why = duplicate_bound(kills=5, broker_kills=2, broker_restarts=0, workers=3, poll_batch=500,
                               exactly_once=True)
    assert eos == 0 and "exactly once" in why


def _letter(seq: int, partition: int, offset: int, topic: str = MAIN) -> DeadLetter:
    return DeadLetter(seq, topic, partition, offset)


INPUTS_AT = {(0, 0): 7, (0, 1): 8, (1, 0): 9, (1, 1): 7}  # seq 7 written twice


def test_dead_letters_exactly_the_poison_with_their_provenance() -> None:
    ok = check_dead_letters([_letter(7, 0, 0), _letter(7, 1, 1), _letter(9, 1, 0)], poison={7, 9},
                            main_topic=MAIN, inputs_at=INPUTS_AT, exactly_once=True)
    assert (ok.found, ok.expected, ok.again, ok.problems) == (2, 2, 0, [])
    missing = check_dead_letters([_letter(7, 0, 0)], poison={7, 9}, main_topic=MAIN,
                                 inputs_at=INPUTS_AT, exactly_once=False)
    assert missing.found == 1 and "not dead-lettered" in missing.problems[0]


def test_a_non_poison_seq_or_a_wrong_provenance_is_a_problem() -> None:
    stranger = check_dead_letters([_letter(9, 1, 0), _letter(8, 0, 1)], poison={9}, main_topic=MAIN,
                                  inputs_at=INPUTS_AT, exactly_once=False)
    assert stranger.found == 1 and any("non-poison" in p for p in stranger.problems)
    wrong = check_dead_letters([_letter(9, 0, 1)], poison={9}, main_topic=MAIN,
                               inputs_at=INPUTS_AT, exactly_once=False)
    assert any("provenance" in p for p in wrong.problems)
    other_topic = check_dead_letters([_letter(9, 1, 0, topic="r.chaos.events-retry")], poison={9},
                                     main_topic=MAIN, inputs_at=INPUTS_AT, exactly_once=False)
    assert any("provenance" in p for p in other_topic.problems)


def test_a_dead_letter_written_again_counts_at_least_once_and_fails_exactly_once() -> None:
    twice = [_letter(9, 1, 0), _letter(9, 1, 0)]
    alo = check_dead_letters(twice, poison={9}, main_topic=MAIN, inputs_at=INPUTS_AT,
                             exactly_once=False)
    assert (alo.found, alo.again, alo.problems) == (1, 1, [])
    eos = check_dead_letters(twice, poison={9}, main_topic=MAIN, inputs_at=INPUTS_AT,
                             exactly_once=True)
    assert eos.again == 1 and any("written again" in p for p in eos.problems)


def test_committed_at_end_sees_a_record_left_after_the_commit() -> None:
    committed = {("t", 0): 10, ("t", 1): None}
    assert committed_at_end(committed, {}) == (True, [])
    at_end, detail = committed_at_end(committed, {("t", 1): [0, 1]})
    assert not at_end and "t[1]" in detail[0] and "first offset 0" in detail[0]


def _verdicts(**changes: object) -> Verdicts:
    base: dict[str, object] = dict(lost=0, unacknowledged=0, allow_unacked=False, duplicated=3,
                                   bound=10, dead_lettered=20, dead_letters_expected=20,
                                   dead_letter_problems=(), poison_processed=0,
                                   committed_at_end=True)
    base.update(changes)
    return Verdicts(**base)  # type: ignore[arg-type]


def test_run_failures_pass_and_each_reason_to_fail() -> None:
    assert run_failures(_verdicts()) == []
    for change, words in ((dict(lost=1), "lost 1"),
                          (dict(unacknowledged=2), "unacknowledged 2"),
                          (dict(duplicated=11), "over the bound 10"),
                          (dict(dead_lettered=19), "dead-lettered 19 (expected 20)"),
                          (dict(dead_letter_problems=("x",)), "; x"),
                          (dict(poison_processed=1), "poison"),
                          (dict(committed_at_end=False), "committed offsets"),
                          (dict(committed_at_end=None), "not checked")):
        failures = run_failures(_verdicts(**change))
        assert len(failures) == 1 and words in failures[0], (change, failures)


def test_unacknowledged_is_allowed_only_when_asked() -> None:
    assert run_failures(_verdicts(unacknowledged=2, allow_unacked=True)) == []
    assert run_failures(_verdicts(unacknowledged=2, allow_unacked=False))
