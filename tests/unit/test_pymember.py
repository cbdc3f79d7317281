"""The Python member's pure parts, without a broker: the handler, the poll loop against a
fake adapter, the client settings, the event writer and confluent's error throttle."""

from __future__ import annotations

import io
import json
import queue
from typing import Any

import pytest
from confluent_kafka import KafkaError
from offsetlab.lab.clients.protocol import HandlerSpec, MemberConfig
from offsetlab.lab.clients.pymember import Emitter
from offsetlab.lab.clients.pymember_confluent import ConfluentAdapter, confluent_settings
from offsetlab.lab.clients.pymember_kafka_python import kafka_python_settings
from offsetlab.lab.clients.pymember_loop import (
    DependencyDown,
    Handler,
    HandlerFailure,
    MemberLoop,
    Rec,
    group_by_partition,
)

T = "topic"


def rec(partition: int, offset: int, value: str | None = None) -> Rec:
    return Rec(T, partition, offset, f"k{offset}", value if value is not None else f"m{offset}")


def config(**kw: Any) -> MemberConfig:
    return MemberConfig(client=kw.pop("client", "kafka-python"), who="w", bootstrap="b:1",
                        group="g", topics=[T], **kw)


class FakeAdapter:
    """Polls scripted batches; records what the loop asked of it."""

    def __init__(self, batches: list[list[Rec]], held: list[tuple[str, int]] | None = None,
                 *, start_error: Exception | None = None, commit_error: Exception | None = None,
                 on_poll: Any = None) -> None:
        self.batches = list(batches)
        self._held = held if held is not None else [(T, 0), (T, 1)]
        self.assigned_once = False
        self.fatal: str | None = None
        self.calls: list[tuple[Any, ...]] = []
        self.start_error = start_error
        self.commit_error = commit_error
        self.on_poll = on_poll
        self.polls = 0

    def start(self) -> None:
        if self.start_error:
            raise self.start_error

    def poll(self, timeout_s: float) -> list[Rec]:
        self.polls += 1
        if self.on_poll:
            self.on_poll(self)
        self.assigned_once = True
        return self.batches.pop(0) if self.batches else []

    def held(self) -> list[tuple[str, int]]:
        return list(self._held)

    def pause(self, tps: list[tuple[str, int]]) -> None:
        self.calls.append(("pause", tuple(tps)))

    def resume(self, tps: list[tuple[str, int]]) -> None:
        self.calls.append(("resume", tuple(tps)))

    def seek(self, tp: tuple[str, int], offset: int) -> None:
        self.calls.append(("seek", tp, offset))

    def blocked(self, tp: tuple[str, int]) -> bool:
        return False

    def commit(self, r: Rec, mode: str) -> dict[tuple[str, int], int]:
        if self.commit_error:
            raise self.commit_error
        self.calls.append(("commit", r.offset, mode))
        return {r.tp: r.offset + (1 if mode != "message_offset" else 0)}

    def close(self) -> None:
        self.calls.append(("close",))


class Events(list):
    def __call__(self, event: str, **fields: Any) -> None:
        self.append({"event": event, **fields})

    def kinds(self) -> list[str]:
        return [e["event"] for e in self]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self if e["event"] == kind]


def run_loop(cfg: MemberConfig, adapter: FakeAdapter, *, stop_after_polls: int = 3,
             clock: Any = None) -> tuple[int, Events]:
    events = Events()
    commands: queue.Queue[dict[str, Any]] = queue.Queue()
    prior = adapter.on_poll

    def on_poll(a: FakeAdapter) -> None:
        if prior:
            prior(a)
        if a.polls == stop_after_polls:
            commands.put({"cmd": "stop"})

    adapter.on_poll = on_poll
    loop = MemberLoop(cfg, adapter, events, commands, handler=Handler(cfg.handler, lambda s: None),
                      **({"clock": clock} if clock else {}))
    return loop.run(), events


def test_group_by_partition_keeps_first_seen_partition_order_and_sorts_offsets() -> None:
    groups = group_by_partition([rec(1, 5), rec(0, 2), rec(1, 4), rec(0, 1)])
    assert list(groups) == [(T, 1), (T, 0)]
    assert [r.offset for r in groups[(T, 1)]] == [4, 5]
    assert [r.offset for r in groups[(T, 0)]] == [1, 2]


def test_handler_fails_a_value_fail_times_then_passes_and_counts_attempts() -> None:
    h = Handler(HandlerSpec(fail_values=["m3"], fail_times=2), lambda s: None)
    with pytest.raises(HandlerFailure):
        h(rec(0, 3))
    with pytest.raises(HandlerFailure):
        h(rec(0, 3))
    h(rec(0, 3))   # the third time it passes
    h(rec(0, 4))
    assert h.attempt_of(rec(0, 3)) == 3 and h.attempt_of(rec(0, 4)) == 1


def test_handler_always_fails_with_fail_times_minus_one_and_when_the_dependency_is_down() -> None:
    h = Handler(HandlerSpec(fail_values=["m1"], fail_times=-1), lambda s: None)
    for _ in range(5):
        with pytest.raises(HandlerFailure):
            h(rec(0, 1))
    h.dependency_up = False
    with pytest.raises(DependencyDown):
        h(rec(0, 2))
    h.dependency_up = True
    h(rec(0, 2))


def test_handler_sleeps_block_first_once_and_sleep_s_every_time() -> None:
    slept: list[float] = []
    h = Handler(HandlerSpec(sleep_s=0.5, block_first_s=7.0), slept.append)
    h(rec(0, 0))
    h(rec(0, 1))
    assert slept == [7.0, 0.5, 0.5]


def test_loop_handles_commits_and_stops_cleanly_with_run_returned_after_the_first_poll() -> None:
    adapter = FakeAdapter([[rec(0, 0), rec(0, 1)]])
    code, events = run_loop(config(commit="offset_plus_one"), adapter)
    assert code == 0
    assert events.kinds()[:2] == ["run_called", "run_returned"]
    assert events.of("run_returned")[0]["records"] == 2
    assert [e["offset"] for e in events.of("handled")] == [0, 1]
    assert [e["offset"] for e in events.of("commit")] == [1, 2]
    assert events[-1] == {"event": "stopped", "clean": True} and adapter.calls[-1] == ("close",)


@pytest.mark.parametrize(("mode", "commits"), [("none", 0), ("auto", 0), ("idiomatic", 2),
                                               ("message_offset", 2)])
def test_loop_commits_only_in_explicit_modes(mode: str, commits: int) -> None:
    code, events = run_loop(config(commit=mode), FakeAdapter([[rec(0, 0), rec(0, 1)]]))
    assert len(events.of("commit")) == commits


def test_commit_failure_is_an_event_and_the_member_goes_on() -> None:
    adapter = FakeAdapter([[rec(0, 0), rec(0, 1)]], commit_error=RuntimeError("gone"))
    code, events = run_loop(config(commit="idiomatic"), adapter)
    assert code == 0 and len(events.of("handled")) == 2
    assert [e["error"] for e in events.of("commit_failed")] == ["RuntimeError: gone"] * 2


def test_throw_seeks_back_to_the_failed_record_and_drops_the_rest_of_its_partition() -> None:
    batch = [rec(0, 0), rec(0, 1, "bad"), rec(0, 2), rec(1, 0)]
    adapter = FakeAdapter([batch, [rec(0, 1, "bad"), rec(0, 2)]])
    cfg = config(commit="offset_plus_one", handler={"fail_values": ["bad"], "on_fail": "throw"})
    code, events = run_loop(cfg, adapter)
    assert [(e["partition"], e["offset"]) for e in events.of("handled")] == [
        (0, 0), (1, 0), (0, 1), (0, 2)]
    assert ("seek", (T, 0), 1) in adapter.calls
    assert [e["offset"] for e in events.of("seek")] == [1]
    assert events.of("handler_failed")[0]["error"].startswith("HandlerFailure")
    assert [e["attempt"] for e in events.of("handled") if e["offset"] == 1] == [2]
    assert not any(c[0] == "pause" for c in adapter.calls)


def test_skip_goes_on_without_committing_the_failed_record_or_seeking() -> None:
    adapter = FakeAdapter([[rec(0, 0), rec(0, 1, "bad"), rec(0, 2)]])
    cfg = config(commit="offset_plus_one", handler={"fail_values": ["bad"], "on_fail": "skip"})
    code, events = run_loop(cfg, adapter)
    assert [e["offset"] for e in events.of("handled")] == [0, 2]
    assert [e["offset"] for e in events.of("commit")] == [1, 3]
    assert not events.of("seek")


@pytest.mark.parametrize(("style", "handled"), [("batch", [(0, 0), (1, 0)]),
                                                 ("message", [(0, 0), (0, 2), (1, 0)])])
def test_return_leaves_the_batch_without_a_seek_and_is_skip_in_message_style(
        style: str, handled: list[tuple[int, int]]) -> None:
    batch = [rec(0, 0), rec(0, 1, "bad"), rec(0, 2), rec(1, 0)]
    cfg = config(style=style, commit="offset_plus_one",
                 handler={"fail_values": ["bad"], "on_fail": "return"})
    code, events = run_loop(cfg, FakeAdapter([batch]))
    assert [(e["partition"], e["offset"]) for e in events.of("handled")] == handled
    assert not events.of("seek") and len(events.of("handler_failed")) == 1


def test_pause_and_seek_pauses_seeks_back_and_resumes_after_retry_after_s() -> None:
    now = [100.0]

    def tick(a: FakeAdapter) -> None:
        now[0] += 0.5

    adapter = FakeAdapter([[rec(0, 0, "bad"), rec(0, 1)]], held=[(T, 0)], on_poll=tick)
    cfg = config(handler={"fail_values": ["bad"], "on_fail": "pause_and_seek",
                          "retry_after_s": 1.0})
    code, events = run_loop(cfg, adapter, stop_after_polls=6, clock=lambda: now[0])
    kinds = [k for k in events.kinds() if k in ("handler_failed", "pause", "seek", "resume")]
    assert kinds == ["handler_failed", "pause", "seek", "resume"]
    assert events.of("pause")[0] == {"event": "pause", "partitions": [[T, 0]], "by": "handler"}
    assert events.of("resume")[0]["by"] == "handler"
    assert adapter.calls[:3] == [("pause", ((T, 0),)), ("seek", (T, 0), 0), ("resume", ((T, 0),))]


def test_a_pause_revoked_before_its_retry_is_not_resumed() -> None:
    now = [0.0]

    def tick(a: FakeAdapter) -> None:
        now[0] += 0.6
        if a.polls == 2:
            a._held = []   # the partition was revoked meanwhile

    adapter = FakeAdapter([[rec(0, 0, "bad")]], held=[(T, 0)], on_poll=tick)
    cfg = config(handler={"fail_values": ["bad"], "on_fail": "pause_and_throw",
                          "retry_after_s": 1.0})
    code, events = run_loop(cfg, adapter, stop_after_polls=5, clock=lambda: now[0])
    assert events.of("pause") and not events.of("resume")


def test_pause_command_mid_poll_stops_handling_that_partition_and_seeks_back() -> None:
    adapter = FakeAdapter([[rec(0, 0), rec(0, 1), rec(0, 2)]], held=[(T, 0), (T, 1)])
    events = Events()
    commands: queue.Queue[dict[str, Any]] = queue.Queue()

    class Once(Handler):
        def __call__(self, r: Rec) -> None:
            super().__call__(r)
            if r.offset == 0:
                commands.put({"cmd": "pause", "partitions": [0]})

    def stop_later(a: FakeAdapter) -> None:
        if a.polls == 2:
            commands.put({"cmd": "stop"})

    adapter.on_poll = stop_later
    loop = MemberLoop(config(commit="none"), adapter, events, commands,
                      handler=Once(HandlerSpec(), lambda s: None))
    assert loop.run() == 0
    assert [e["offset"] for e in events.of("handled")] == [0]
    assert events.of("pause")[0]["partitions"] == [[T, 0]]
    assert [e["offset"] for e in events.of("seek")] == [1]


def test_pause_command_without_partitions_pauses_every_held_partition_of_the_topics() -> None:
    adapter = FakeAdapter([], held=[(T, 0), (T, 2), ("other", 0)])
    events = Events()
    commands: queue.Queue[dict[str, Any]] = queue.Queue()
    for c in ({"cmd": "pause", "partitions": None}, {"cmd": "resume", "partitions": [2, 7]},
              {"cmd": "dependency", "up": False}, {"cmd": "stop"}):
        commands.put(c)
    loop = MemberLoop(config(), adapter, events, commands)
    assert loop.drain() is True
    assert adapter.calls == [("pause", ((T, 0), (T, 2))), ("resume", ((T, 2),))]
    assert events.of("pause")[0]["partitions"] == [[T, 0], [T, 2]]
    assert loop.handler.dependency_up is False


def test_a_client_that_does_not_start_is_a_fatal_error_and_an_unclean_stop() -> None:
    code, events = run_loop(config(), FakeAdapter([], start_error=TimeoutError("no broker")))
    assert code == 1
    assert events == [{"event": "error", "where": "start", "error": "TimeoutError: no broker",
                       "fatal": True}, {"event": "stopped", "clean": False}]


def test_a_fatal_client_error_ends_the_member_uncleanly() -> None:
    def fail(a: FakeAdapter) -> None:
        a.fatal = "KafkaError: fenced"

    code, events = run_loop(config(), FakeAdapter([[rec(0, 0)]], on_poll=fail),
                            stop_after_polls=99)
    assert code == 1 and events[-1] == {"event": "stopped", "clean": False}


def test_no_run_returned_before_an_assignment() -> None:
    class Unassigned(FakeAdapter):
        def poll(self, timeout_s: float) -> list[Rec]:
            super().poll(timeout_s)
            self.assigned_once = self.polls >= 3
            return []

    code, events = run_loop(config(), Unassigned([]), stop_after_polls=4)
    assert events.kinds().count("run_returned") == 1
    assert events.of("run_returned")[0]["records"] == 0


def test_kafka_python_settings_leave_defaults_unset_and_merge_extra_last() -> None:
    s = kafka_python_settings(config(commit="idiomatic", extra={"max_poll_records": 5,
                                                                "client_id": "x"}))
    assert s == {"bootstrap_servers": "b:1", "group_id": "g", "client_id": "x",
                 "enable_auto_commit": False, "auto_offset_reset": "earliest",
                 "max_poll_records": 5}
    s = kafka_python_settings(config(commit="auto", from_beginning=False, session_timeout_ms=6000,
                                     group_instance_id="i1"))
    assert s["enable_auto_commit"] is True and "auto_offset_reset" not in s
    assert s["session_timeout_ms"] == 6000 and s["group_instance_id"] == "i1"
    assert "heartbeat_interval_ms" not in s and "max_poll_interval_ms" not in s


def test_confluent_settings_spell_librdkafka_keys() -> None:
    s = confluent_settings(config(client="confluent-kafka", group_protocol="consumer",
                                  max_poll_interval_ms=9000))
    assert s == {"bootstrap.servers": "b:1", "group.id": "g", "client.id": "w",
                 "group.protocol": "consumer", "enable.auto.commit": False,
                 "auto.offset.reset": "earliest", "max.poll.interval.ms": 9000}
    s = confluent_settings(config(client="confluent-kafka", commit="auto", session_timeout_ms=6000,
                                  heartbeat_interval_ms=2000))
    assert s["enable.auto.commit"] is True
    assert s["session.timeout.ms"] == 6000 and s["heartbeat.interval.ms"] == 2000


def test_emitter_writes_one_flushed_json_line_per_event() -> None:
    out = io.StringIO()
    Emitter(out, "kafka-python")("join", generation=3, partitions=[[T, 0]])
    line = json.loads(out.getvalue())
    assert line["event"] == "join" and line["client"] == "kafka-python"
    assert line["generation"] == 3 and isinstance(line["at"], float)
    assert out.getvalue().count("\n") == 1


def test_confluent_error_cb_folds_repeats_of_a_code_into_one_event_a_second(monkeypatch) -> None:
    import offsetlab.lab.clients.pymember_confluent as pc

    now = [10.0]
    monkeypatch.setattr(pc.time, "monotonic", lambda: now[0])
    events = Events()
    adapter = ConfluentAdapter(config(client="confluent-kafka"), events)
    for _ in range(5):
        adapter._on_error(KafkaError(KafkaError._TRANSPORT))
        now[0] += 0.1
    adapter._on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    now[0] += 0.6
    adapter._on_error(KafkaError(KafkaError._TRANSPORT))
    assert [(e["code"], e["suppressed"]) for e in events] == [
        ("_TRANSPORT", 0), ("_ALL_BROKERS_DOWN", 0), ("_TRANSPORT", 4)]
    assert adapter.fatal is None
    adapter._on_error(KafkaError(KafkaError._FATAL, fatal=True))
    adapter._on_error(KafkaError(KafkaError._FATAL, fatal=True))
    assert [e["fatal"] for e in events[-2:]] == [True, True] and adapter.fatal


def test_a_stop_during_the_handlers_sleep_ends_it_and_the_record_is_not_handled() -> None:
    import threading
    import time

    adapter = FakeAdapter([[rec(0, 0), rec(0, 1)]], held=[(T, 0)])
    events = Events()
    commands: queue.Queue[dict[str, Any]] = queue.Queue()
    loop = MemberLoop(config(commit="offset_plus_one", handler={"sleep_s": 30.0}), adapter,
                      events, commands)
    commands.put({"cmd": "pause", "partitions": None})   # before the poll: applied at once

    def later() -> None:
        time.sleep(0.2)
        commands.put({"cmd": "dependency", "up": False})  # deferred until the handler returns
        commands.put({"cmd": "stop"})

    threading.Thread(target=later, daemon=True).start()
    started = time.monotonic()
    assert loop.run() == 0
    assert time.monotonic() - started < 5
    assert events.of("handled") == [] and events.of("commit") == []
    assert events[-1] == {"event": "stopped", "clean": True}
    assert loop.deferred == [{"cmd": "dependency", "up": False}]


def test_commands_that_came_during_a_sleep_are_applied_after_the_handler_returns() -> None:
    import threading
    import time

    adapter = FakeAdapter([[rec(0, 0), rec(0, 1)]], held=[(T, 0)])
    events = Events()
    commands: queue.Queue[dict[str, Any]] = queue.Queue()
    loop = MemberLoop(config(commit="none", handler={"block_first_s": 0.5}), adapter, events,
                      commands)

    def later() -> None:
        time.sleep(0.1)
        commands.put({"cmd": "pause", "partitions": [0]})
        time.sleep(1.0)
        commands.put({"cmd": "stop"})

    threading.Thread(target=later, daemon=True).start()
    assert loop.run() == 0
    kinds = [k for k in events.kinds() if k in ("handled", "pause", "seek")]
    assert kinds == ["handled", "pause", "seek"]   # offset 1 not handled: paused, sought back
    assert events.of("seek")[0]["offset"] == 1


def test_confluent_seek_not_ready_is_applied_at_the_next_poll_and_drops_records_meanwhile() -> None:
    from confluent_kafka import KafkaException

    class FakeConsumer:
        def __init__(self) -> None:
            self.ready = False
            self.seeks: list[tuple[str, int, int]] = []

        def seek(self, tp: Any) -> None:
            if not self.ready:
                raise KafkaException(KafkaError(KafkaError._STATE))
            self.seeks.append((tp.topic, tp.partition, tp.offset))

        def consume(self, n: int, timeout: float) -> list[Any]:
            return []

        def poll(self, timeout: float) -> Any:
            return None

    adapter = ConfluentAdapter(config(client="confluent-kafka"), Events())
    fake = FakeConsumer()
    adapter.consumer = fake  # type: ignore[assignment]
    adapter.seek((T, 0), 4)
    assert adapter.blocked((T, 0)) and not adapter.blocked((T, 1)) and fake.seeks == []
    adapter.poll(0)
    assert adapter.blocked((T, 0))          # still not ready
    fake.ready = True
    adapter.poll(0)
    assert fake.seeks == [(T, 0, 4)] and not adapter.blocked((T, 0))
