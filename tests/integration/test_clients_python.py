"""The Python members (kafka-python, confluent-kafka classic and KIP-848) through the common
child-process interface, on the session's embedded Kafka: join, consume, commit (read back
from the broker), pause/resume, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from confluent_kafka.admin import AdminClient
from offsetlab.brokers import BrokerHandle
from offsetlab.lab.clients import MemberConfig
from offsetlab.lab.clients.child import ChildMember
from offsetlab.lab.raw import committed_offsets, create_topic, produce
from offsetlab.lab.timeline_core import Timeline

COLUMNS = [("kafka-python", "classic"), ("confluent-kafka", "classic"),
           ("confluent-kafka", "consumer")]
IDS = ["kafka-python", "confluent-classic", "confluent-consumer"]
WAIT_S = 60.0


def _member(broker: BrokerHandle, client: str, protocol: str, topic: str, group: str,
            tmp_path, **kw) -> ChildMember:
    config = MemberConfig(client=client, who=f"m-{client}-{protocol}", bootstrap=broker.bootstrap_servers,
                          group=group, topics=[topic], group_protocol=protocol, **kw)
    return ChildMember(config, Timeline(), log_dir=tmp_path)


def _group_members(broker: BrokerHandle, group: str) -> int:
    """How many members the broker's group has now (classic and consumer groups alike)."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    return len(admin.describe_consumer_groups([group])[group].result(30).members)


@pytest.mark.parametrize(("client", "protocol"), COLUMNS, ids=IDS)
def test_join_consume_commit_stop(kafka_broker: BrokerHandle, unique: str, tmp_path,
                                  client: str, protocol: str) -> None:
    topic = create_topic(kafka_broker, f"py-{unique}", partitions=2)
    produce(kafka_broker, topic, [(f"k{i}", f"v{i}") for i in range(6)])
    group = f"g-{unique}"
    with _member(kafka_broker, client, protocol, topic, group, tmp_path,
                 commit="offset_plus_one") as member:
        member.wait_for("ready", timeout_s=WAIT_S)
        join = member.wait_for("join", timeout_s=WAIT_S)
        assert join["member_id"]
        member.wait_for("handled", timeout_s=WAIT_S, count=6)
        member.wait_for("commit", timeout_s=WAIT_S, count=6)
        member.wait_for("run_returned", timeout_s=WAIT_S)
        assert _group_members(kafka_broker, group) == 1
        assert member.stop() == 0
    assert _group_members(kafka_broker, group) == 0, "stop did not leave the group"
    kinds = [e["event"] for e in member.events]
    assert kinds.index("run_called") < kinds.index("run_returned")
    assert kinds[-1] == "stopped" and member.events[-1]["clean"] is True
    handled = sorted((e["partition"], e["offset"]) for e in member.seen("handled"))
    ends: dict[int, int] = {}
    for partition, offset in handled:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    assert len(handled) == 6 == len(set(handled))
    assert committed_offsets(kafka_broker, group, topic) == ends
    last_commits = {e["partition"]: e["offset"] for e in member.seen("commit")}
    assert last_commits == ends


@pytest.mark.parametrize(("client", "protocol"), COLUMNS, ids=IDS)
def test_pause_then_resume(kafka_broker: BrokerHandle, unique: str, tmp_path,
                           client: str, protocol: str) -> None:
    topic = create_topic(kafka_broker, f"py-{unique}", partitions=1)
    produce(kafka_broker, topic, [("k0", "v0")])
    with _member(kafka_broker, client, protocol, topic, f"g-{unique}", tmp_path,
                 commit="idiomatic") as member:
        member.wait_for("handled", timeout_s=WAIT_S)
        member.pause()
        paused = member.wait_for("pause", timeout_s=WAIT_S)
        assert paused["partitions"] == [[topic, 0]]
        produce(kafka_broker, topic, [("k1", "v1"), ("k2", "v2")])
        time.sleep(2.0)
        assert len(member.seen("handled")) == 1, "handled a message while paused"
        member.resume()
        member.wait_for("resume", timeout_s=WAIT_S)
        member.wait_for("handled", timeout_s=WAIT_S, count=3)
        assert member.stop() == 0
    assert [e["offset"] for e in member.seen("handled")] == [0, 1, 2]
    assert member.seen("commit")[-1]["offset"] == 3


@pytest.mark.parametrize(("client", "protocol"), COLUMNS, ids=IDS)
def test_failed_message_is_sought_back_and_handled_again(
        kafka_broker: BrokerHandle, unique: str, tmp_path, client: str, protocol: str) -> None:
    topic = create_topic(kafka_broker, f"py-{unique}", partitions=1)
    produce(kafka_broker, topic, [(f"k{i}", f"m{i}") for i in range(1, 6)])
    with _member(kafka_broker, client, protocol, topic, f"g-{unique}", tmp_path,
                 commit="offset_plus_one", style="batch",
                 handler={"fail_values": ["m3"], "fail_times": 1}) as member:
        member.wait_for("handled", timeout_s=WAIT_S, count=5)
        assert member.stop() == 0
    assert [e["value"] for e in member.seen("handled")] == ["m1", "m2", "m3", "m4", "m5"]
    failed = member.seen("handler_failed")
    assert [e["value"] for e in failed] == ["m3"]
    assert [e["offset"] for e in member.seen("seek")] == [2]
    assert member.seen("handled", lambda e: e["value"] == "m3")[0]["attempt"] == 2


@pytest.mark.parametrize(("client", "protocol"), COLUMNS, ids=IDS)
def test_stdin_eof_exits_at_once_without_leaving(kafka_broker: BrokerHandle, unique: str,
                                                 tmp_path, client: str, protocol: str) -> None:
    topic = create_topic(kafka_broker, f"py-{unique}", partitions=1)
    group = f"g-{unique}"
    with _member(kafka_broker, client, protocol, topic, group, tmp_path) as member:
        member.wait_for("run_returned", timeout_s=WAIT_S)
        assert member.proc is not None and member.proc.stdin is not None
        member.proc.stdin.close()   # what the parent's death does
        assert member.proc.wait(10) == 3
        member.exit_code = 3
    assert member.seen("stopped") == []
    assert _group_members(kafka_broker, group) == 1, "the member left the group on EOF"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_kafka_python_without_a_broker_fails_at_start(tmp_path) -> None:
    """kafka-python's constructor raises when it cannot bootstrap (after its
    ``bootstrap_timeout_ms``, 30 s by default; 2 s here to stay quick)."""
    config = MemberConfig(client="kafka-python", who="down-kp", group="g-down", topics=["t"],
                          bootstrap=f"127.0.0.1:{_closed_port()}",
                          extra={"bootstrap_timeout_ms": 2000})
    with ChildMember(config, Timeline(), log_dir=tmp_path) as member:
        stopped = member.wait_for("stopped", timeout_s=WAIT_S)
        assert member.proc is not None and member.proc.wait(10) == 1
    assert stopped["clean"] is False
    error = member.wait_for("error")
    assert error["where"] == "start" and error["fatal"] is True
    assert error["error"].startswith("KafkaTimeoutError")
    assert member.seen("ready") == []


@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_confluent_without_a_broker_reports_and_keeps_trying(tmp_path, protocol: str) -> None:
    config = MemberConfig(client="confluent-kafka", who=f"down-{protocol}", group="g-down",
                          topics=["t"], bootstrap=f"127.0.0.1:{_closed_port()}",
                          group_protocol=protocol)
    with ChildMember(config, Timeline(), log_dir=tmp_path) as member:
        member.wait_for("error", lambda e: e.get("code") == "_TRANSPORT", timeout_s=WAIT_S,
                        count=2)
        assert member.alive
        assert member.stop() == 0
    errors = member.seen("error")
    assert all(e["where"] == "error_cb" and e["fatal"] is False for e in errors)
    assert sum(e["suppressed"] for e in errors) > 0   # librdkafka reports far more than 1/s
    assert member.events[-1]["event"] == "stopped" and member.events[-1]["clean"] is True


PARENT = """
import sys, time
from offsetlab.lab.clients import MemberConfig
from offsetlab.lab.clients.child import ChildMember
m = ChildMember(MemberConfig(client="confluent-kafka", who="orphan", group="g", topics=["t"],
                             bootstrap=sys.argv[1])).start()
m.wait_for("run_called", timeout_s=60)
print(m.proc.pid, flush=True)
time.sleep(600)
"""


def test_a_sigkilled_parent_leaves_no_member_process(tmp_path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, f"127.0.0.1:{_closed_port()}"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, 0)   # alive while its parent is
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail(f"member process {child} outlived its SIGKILLed parent")
