"""The KafkaJS member (``node member.js``, KafkaJS 2.2.4) through the common child-process
interface, on the session's embedded Kafka: join, consume, commit (read back from the broker
with kafka-python), pause/resume, a crash and KafkaJS's restart, a broker that is down at
start; and no node process outlives its parent, SIGKILL included. Never skipped: Node is a
requirement of ``make test``."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from offsetlab.brokers import BrokerHandle
from offsetlab.lab.clients import MemberConfig
from offsetlab.lab.clients.child import ChildMember
from offsetlab.lab.raw import committed_offsets, create_topic, produce
from offsetlab.lab.timeline_core import Timeline

WAIT_S = 60.0
#: KafkaJS's retry made short, so that a crash and its restart take about a second: on the
#: client (``new Kafka({retry})``: connect) and on the consumer, whose own default
#: ``{retries: 5}`` overrides the client's ``retries`` for its runner
_RETRY = {"retries": 1, "initialRetryTime": 100, "maxRetryTime": 500}
FAST_RETRY = {"retry": _RETRY, "consumer": {"retry": _RETRY}}


def _member(bootstrap: str, topic: str, group: str, tmp_path: Path, **kw) -> ChildMember:
    config = MemberConfig(client="kafkajs", who=f"js-{group}", bootstrap=bootstrap, group=group,
                          topics=[topic], **kw)
    return ChildMember(config, Timeline(), log_dir=tmp_path)


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _is_member_js(pid: int) -> bool:
    try:
        return b"member.js" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


#: commit mode -> the committed offset of a partition whose last handled offset is o
COMMITS = {"idiomatic": 1, "offset_plus_one": 1, "message_offset": 0}


@pytest.mark.parametrize("commit", list(COMMITS))
def test_join_consume_commit_stop(kafka_broker: BrokerHandle, unique: str, tmp_path,
                                  commit: str) -> None:
    topic = create_topic(kafka_broker, f"js-{unique}", partitions=2)
    produce(kafka_broker, topic, [(f"k{i}", f"v{i}") for i in range(6)])
    group = f"g-{unique}"
    with _member(kafka_broker.bootstrap_servers, topic, group, tmp_path, commit=commit) as member:
        member.wait_for("ready", timeout_s=WAIT_S)
        join = member.wait_for("join", timeout_s=WAIT_S)
        assert join["member_id"] and join["generation"] is None and join["join_s"] > 0
        assert sorted(map(tuple, join["partitions"])) == [(topic, 0), (topic, 1)]
        member.wait_for("handled", timeout_s=WAIT_S, count=6)
        member.wait_for("run_returned", timeout_s=WAIT_S)
        ends: dict[int, int] = {}
        for e in member.seen("handled"):
            ends[e["partition"]] = max(ends.get(e["partition"], 0), e["offset"] + COMMITS[commit])
        for partition, offset in ends.items():
            member.wait_for("commit", lambda e, p=partition, o=offset: (e["partition"], e["offset"]) == (p, o),
                            timeout_s=WAIT_S)
        assert member.stop() == 0
    kinds = [e["event"] for e in member.events]
    assert kinds.index("run_called") < kinds.index("join") < kinds.index("run_returned")
    assert kinds[-1] == "stopped" and member.events[-1]["clean"] is True
    assert kinds.index("assigned") == kinds.index("join") + 1
    handled = sorted((e["partition"], e["offset"]) for e in member.seen("handled"))
    assert len(handled) == 6 == len(set(handled))
    assert committed_offsets(kafka_broker, group, topic) == ends
    assert member.holds() == set()          # the disconnect revoked what it held
    assert all(e["client"] == "kafkajs" and isinstance(e["at"], float) for e in member.events)


def test_pause_then_resume(kafka_broker: BrokerHandle, unique: str, tmp_path) -> None:
    topic = create_topic(kafka_broker, f"js-{unique}", partitions=1)
    produce(kafka_broker, topic, [("k0", "v0")])
    with _member(kafka_broker.bootstrap_servers, topic, f"g-{unique}", tmp_path) as member:
        member.wait_for("handled", timeout_s=WAIT_S)
        member.pause()
        paused = member.wait_for("pause", timeout_s=WAIT_S)
        assert paused["partitions"] == [[topic, 0]] and paused["by"] == "command"
        produce(kafka_broker, topic, [("k1", "v1"), ("k2", "v2")])
        time.sleep(3.0)
        assert len(member.seen("handled")) == 1, "handled a message while paused"
        member.resume()
        member.wait_for("resume", timeout_s=WAIT_S)
        member.wait_for("handled", timeout_s=WAIT_S, count=3)
        member.wait_for("commit", lambda e: e["offset"] == 3, timeout_s=WAIT_S)
        assert member.stop() == 0
    assert [e["offset"] for e in member.seen("handled")] == [0, 1, 2]


def test_throwing_handler_crashes_and_kafkajs_restarts(kafka_broker: BrokerHandle, unique: str,
                                                      tmp_path) -> None:
    """Message 3 of 5 fails twice: KafkaJS retries once (FAST_RETRY), then crashes with
    ``restart`` true, restarts, rejoins and hands the message over a third time."""
    topic = create_topic(kafka_broker, f"js-{unique}", partitions=1)
    produce(kafka_broker, topic, [(f"k{i}", f"m{i}") for i in range(1, 6)])
    with _member(kafka_broker.bootstrap_servers, topic, f"g-{unique}", tmp_path,
                 handler={"fail_values": ["m3"], "fail_times": 2}, extra=FAST_RETRY) as member:
        member.wait_for("handled", timeout_s=WAIT_S, count=5)
        assert member.stop() == 0
    crash = member.wait_for("crash", timeout_s=1)
    assert crash["restart"] is True and crash["error"].startswith("KafkaJSNumberOfRetriesExceeded")
    assert [e["value"] for e in member.seen("handled")] == ["m1", "m2", "m3", "m4", "m5"]
    assert [e["attempt"] for e in member.seen("handler_failed")] == [1, 2]
    assert member.seen("handled", lambda e: e["value"] == "m3")[0]["attempt"] == 3
    kinds = [e["event"] for e in member.events]
    assert kinds.count("join") == 2               # the restart joined the group again
    assert kinds.index("crash") < kinds.index("join", kinds.index("crash"))


def test_broker_down_at_start_is_a_fatal_start_error(tmp_path) -> None:
    with socket.socket() as s:                    # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with _member(f"127.0.0.1:{port}", "t", "g-down", tmp_path, extra=FAST_RETRY) as member:
        member.wait_for("stopped", timeout_s=WAIT_S)
        assert member.proc.wait(WAIT_S) != 0
    err = member.seen("error")[0]
    assert (err["where"], err["fatal"]) == ("start", True)
    assert err["error"].startswith("KafkaJSNumberOfRetriesExceeded: Connection error")
    assert member.seen("stopped")[0]["clean"] is False
    assert not member.seen("run_called")


def test_stdin_eof_ends_the_node_process(kafka_broker: BrokerHandle, unique: str, tmp_path) -> None:
    topic = create_topic(kafka_broker, f"js-{unique}", partitions=1)
    member = _member(kafka_broker.bootstrap_servers, topic, f"g-{unique}", tmp_path).start()
    try:
        member.wait_for("join", timeout_s=WAIT_S)
        member.proc.stdin.close()
        assert member.proc.wait(10) == 3          # member.js's status for stdin EOF
        assert not member.seen("stopped")         # no clean leave: as if SIGKILLed
    finally:
        member.kill()


PARENT = """
import sys, time
from offsetlab.lab.clients.child import ChildMember
from offsetlab.lab.clients.protocol import MemberConfig
bootstrap, group, topic = sys.argv[1:4]
m = ChildMember(MemberConfig(client="kafkajs", who="orphan", bootstrap=bootstrap, group=group,
                             topics=[topic])).start()
m.wait_for("join", timeout_s=60)
print(m.proc.pid, flush=True)
time.sleep(600)
"""


def test_sigkilled_parent_leaves_no_node_process(kafka_broker: BrokerHandle, unique: str,
                                                 tmp_path) -> None:
    topic = create_topic(kafka_broker, f"js-{unique}", partitions=1)
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, "-u", str(script), kafka_broker.bootstrap_servers,
                               f"g-{unique}", topic], stdout=subprocess.PIPE)
    node_pid = None
    try:
        ready, _, _ = select.select([parent.stdout], [], [], WAIT_S + 30)
        assert ready, "the parent did not report its member's pid"
        node_pid = int(parent.stdout.readline())
        assert _is_member_js(node_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _gone(node_pid, 5.0), "the node member outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if node_pid is not None and _is_member_js(node_pid):
            os.kill(node_pid, signal.SIGKILL)


def test_a_pause_does_not_survive_kafkajs_restart_after_a_crash(kafka_broker: BrokerHandle,
                                                                unique: str, tmp_path) -> None:
    """Partition 0 paused by command; a message on partition 1 fails until the consumer
    crashes; after KafkaJS's restart partition 0 is no longer paused (its messages are
    handled, ``join`` reports ``paused`` []), although nobody resumed it."""
    from kafka import KafkaProducer

    topic = create_topic(kafka_broker, f"js-{unique}", partitions=2)
    with _member(kafka_broker.bootstrap_servers, topic, f"g-{unique}", tmp_path,
                 handler={"fail_values": ["bad"], "fail_times": 2}, extra=FAST_RETRY) as member:
        member.wait_for("run_returned", timeout_s=WAIT_S)
        member.pause([0])
        assert member.wait_for("pause", timeout_s=WAIT_S)["partitions"] == [[topic, 0]]
        producer = KafkaProducer(**kafka_broker.clients())
        try:
            producer.send(topic, value=b"held", partition=0).get(30)
            time.sleep(1.0)
            assert not member.seen("handled"), "handled a message of the paused partition"
            producer.send(topic, value=b"bad", partition=1).get(30)
        finally:
            producer.close()
        member.wait_for("crash", timeout_s=WAIT_S)
        rejoin = member.wait_for("join", timeout_s=WAIT_S, count=2)
        assert rejoin["paused"] == []
        held = member.wait_for("handled", lambda e: e["value"] == "held", timeout_s=WAIT_S)
        assert held["partition"] == 0 and held["t"] > rejoin["t"]
        assert not member.seen("resume")
        assert member.stop() == 0


PARENT_WITHOUT_PIPE = """
import os, subprocess, sys, time
child = subprocess.Popen(sys.argv[1:], stdin=open(os.environ["MEMBER_STDIN"], "rb"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_node_member_exits_when_reparented_with_stdin_still_open(tmp_path) -> None:
    """member.js's own parent watch, without the two other guards: its stdin is a FIFO the
    test keeps open (no EOF) and no PR_SET_PDEATHSIG; SIGKILL the parent and the member must
    notice that its parent pid changed (checked every 500 ms)."""
    from offsetlab.lab.clients import node

    cmd, env = node.child_command()
    fifo = tmp_path / "member-stdin"
    os.mkfifo(fifo)
    keep = os.open(fifo, os.O_RDWR)          # a writer that outlives the parent: no EOF
    script = tmp_path / "parent.py"
    script.write_text(PARENT_WITHOUT_PIPE)
    parent = subprocess.Popen([sys.executable, "-u", str(script), *cmd], stdout=subprocess.PIPE,
                              env={**os.environ, **env, "MEMBER_STDIN": str(fifo)})
    node_pid = None
    try:
        config = MemberConfig(client="kafkajs", who="reparented", bootstrap="127.0.0.1:9",
                              group="g", topics=["t"],
                              extra={"retry": {"retries": 100, "initialRetryTime": 1000}})
        os.write(keep, config.to_json().encode() + b"\n")
        ready, _, _ = select.select([parent.stdout], [], [], 30)
        assert ready, "the parent did not report its member's pid"
        node_pid = int(parent.stdout.readline())
        time.sleep(1.0)
        assert _is_member_js(node_pid), "the member did not stay up with its parent alive"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _gone(node_pid, 5.0), "the node member outlived its parent"
    finally:
        os.close(keep)
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if node_pid is not None and _is_member_js(node_pid):
            os.kill(node_pid, signal.SIGKILL)


@pytest.mark.parametrize(("on_fail", "auto_resolve", "committed", "handled"), [
    ("return", None, 5, ["m1", "m2"]),            # eachBatchAutoResolve (default true): past 5
    ("return", False, 2, ["m1", "m2", "m3", "m4", "m5"]),   # resolved 1, 2 only: 3 comes back
    ("skip", None, 5, ["m1", "m2", "m4", "m5"]),  # 3 neither resolved nor committed
])
def test_batch_on_fail_return_and_skip(kafka_broker: BrokerHandle, unique: str, tmp_path,
                                       on_fail: str, auto_resolve: bool | None, committed: int,
                                       handled: list[str]) -> None:
    """eachBatch with message 3 of 5 failing once: ``return`` leaves eachBatch at the failure
    without throwing (KafkaJS's eachBatchAutoResolve then resolves the batch's last offset
    unless it is off); ``skip`` goes on past it. The first commit is read from the events."""
    topic = create_topic(kafka_broker, f"js-{unique}", partitions=1)
    produce(kafka_broker, topic, [(f"k{i}", f"m{i}") for i in range(1, 6)])
    extra = {} if auto_resolve is None else {"run": {"eachBatchAutoResolve": auto_resolve}}
    with _member(kafka_broker.bootstrap_servers, topic, f"g-{unique}", tmp_path, style="batch",
                 handler={"fail_values": ["m3"], "on_fail": on_fail}, extra=extra) as member:
        member.wait_for("handler_failed", timeout_s=WAIT_S)
        first = member.wait_for("commit", timeout_s=WAIT_S)
        if committed == 2:
            member.wait_for("handled", lambda e: e["value"] == "m5", timeout_s=WAIT_S)
        else:
            time.sleep(1.0)   # nothing more comes: 3 (and 4, 5 for return) are behind the commit
        assert member.stop() == 0
    assert first["offset"] == committed
    assert [e["value"] for e in member.seen("handled")] == handled
