"""E05's client-section finders on hand-made events, each coming out both ways (no broker)."""

from __future__ import annotations

from typing import Any

from offsetlab.lab.experiments import e05_clients_findings as ff
from offsetlab.lab.findings import assert_flips, flips


def call(at: float, offset: int, ok: bool = True) -> dict[str, Any]:
    return {"event": "handled" if ok else "handler_failed", "at": at, "offset": offset,
            "value": str(offset)}


def kafkajs(first_after: int = 2, later_early: bool = False) -> list[dict[str, Any]]:
    """Offsets 0, 1; 2 fails 6 times with growing gaps; crash; restart; first call at
    ``first_after``, then 2, 3, 4."""
    ev = [{"event": "join", "at": 0.5, "member_id": "m1"}, call(1, 0), call(1, 1)]
    t = 1.0
    for gap in (0, 0.3, 0.6, 1.2, 2.4, 4.8):
        t += gap
        ev.append(call(t, 2, ok=False))
    if later_early:
        ev.append(call(t + 0.1, 3))
    ev += [{"event": "crash", "at": t + 0.1, "error": "KafkaJSNumberOfRetriesExceeded: x",
            "restart": True},
           {"event": "join", "at": t + 8, "member_id": "m2"}]
    offs = [first_after] + [o for o in (2, 3, 4) if o > first_after] if first_after < 2 else [2, 3, 4]
    if later_early:
        offs = [2, 4]
    ev += [call(t + 8.1 + i / 100, o) for i, o in enumerate(offs)]
    return ev


def python() -> list[dict[str, Any]]:
    ev = [{"event": "join", "at": 0.5, "member_id": "p"}, call(1, 0), call(1, 1)]
    ev += [call(1.01 + i / 100, 2, ok=False) for i in range(6)]
    return ev + [call(1.1, 2), call(1.11, 3), call(1.12, 4)]


def s(events: list[dict[str, Any]]) -> dict[str, Any]:
    return ff.summary(events, "2")


def test_summary_of_the_kafkajs_shape() -> None:
    out = s(kafkajs())
    assert out["deliveries"] == 7 and out["failures_before_crash"] == 6
    assert out["restart_s"] == 7.9 and out["new_member"] is True
    assert out["gaps_s"] == [0.3, 0.6, 1.2, 2.4, 4.8]


@flips(ff.crashed)
def test_crashed_lists_crash_events() -> None:
    assert assert_flips(ff.crashed("c", s(kafkajs())), ff.crashed("c", s(python()))) == (
        [["KafkaJSNumberOfRetriesExceeded", True]], [])


@flips(ff.failures_before_crash)
def test_failures_before_crash() -> None:
    assert assert_flips(ff.failures_before_crash("c", s(kafkajs())),
                        ff.failures_before_crash("c", s(python()))) == (6, None)


@flips(ff.gaps_grow)
def test_gaps_grow_needs_growth_and_length() -> None:
    assert assert_flips(ff.gaps_grow("c", s(kafkajs())), ff.gaps_grow("c", s(python()))) == (True, False)
    # growth by a factor on milliseconds is not a backoff
    tiny = [call(1, 2, ok=False), call(1.001, 2, ok=False), call(1.1, 2, ok=False), call(1.2, 2)]
    assert ff.gaps_grow("c", s(tiny)).value is False
    # a first gap inflated by load does not hide the growth
    loaded = [call(t, 2, ok=False) for t in (1, 1.96, 2.79, 4.36, 7.09, 12.45)] + [call(20, 2)]
    assert ff.gaps_grow("c", s(loaded)).value is True
    # a constant gap (confluent-kafka's redeliveries, about 0.5 s) does not grow
    flat = [call(1 + 0.5 * i, 2, ok=False) for i in range(6)] + [call(4.5, 2)]
    assert ff.gaps_grow("c", s(flat)).value is False


@flips(ff.first_after_restart)
def test_first_after_restart_relative_offset() -> None:
    assert assert_flips(ff.first_after_restart("c", s(kafkajs())),
                        ff.first_after_restart("c", s(kafkajs(first_after=1)))) == (0, -1)
    assert ff.first_after_restart("c", s(python())).value is None


@flips(ff.held_back)
def test_held_back_sees_a_later_message_first() -> None:
    assert assert_flips(ff.held_back("c", s(kafkajs())),
                        ff.held_back("c", s(kafkajs(later_early=True)))) == (True, False)
