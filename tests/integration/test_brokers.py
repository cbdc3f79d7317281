"""Brokers really start here: round trip, group split, restart, and no process left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from offsetlab.brokers import NotCapable, start_broker
from offsetlab.bus.deadline import Deadline
from offsetlab.lab.raw import RawGroup, create_topic, produce, unique

pytestmark = pytest.mark.integration


def processes_matching(text: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            continue
        if text in cmd and state != "Z" and "pytest" not in cmd:
            out.append(f"{pid} {cmd[:160]}")
    return out


def wait_gone(text: str, timeout_s: float = 30) -> list[str]:
    deadline = Deadline(timeout_s)
    while (left := processes_matching(text)) and not deadline.expired():
        time.sleep(0.2)
    return left


# Tansu answers a first JoinGroup after about half the session timeout (23 s at kafka-python's
# default 45 s, 3 s at 6 s), so the group tests use a short session timeout on every kind.
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def round_trip(broker) -> list[bytes]:
    topic = unique("rt")
    producer = KafkaProducer(**broker.clients())
    for i in range(5):
        producer.send(topic, key=b"k", value=f"v{i}".encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, **broker.clients(group_id=unique("g"), auto_offset_reset="earliest",
                                                      enable_auto_commit=False, **FAST_GROUP))
    values: list[bytes] = []
    deadline = Deadline(30)
    while len(values) < 5 and not deadline.expired():
        for records in consumer.poll(timeout_ms=200).values():
            values += [r.value for r in records]
    consumer.close()
    return values


def test_kafka_round_trip(kafka_broker):
    assert kafka_broker.kind == "kafka" and kafka_broker.version.startswith("4.")
    assert round_trip(kafka_broker) == [f"v{i}".encode() for i in range(5)]


@pytest.mark.tansu
def test_tansu_round_trip(tansu_broker):
    assert round_trip(tansu_broker) == [f"v{i}".encode() for i in range(5)]


@pytest.mark.parametrize("kind", ["kafka", pytest.param("tansu", marks=pytest.mark.tansu)])
def test_two_consumers_split_three_partitions(kind, request):
    broker = request.getfixturevalue(f"{kind}_broker")
    topic = create_topic(broker, unique("split"), 3)
    group = RawGroup(broker, topic, unique("g"), ["a", "b"], **FAST_GROUP)
    try:
        assignment = group.wait_assigned(3, timeout_s=60)
        produced = produce(broker, topic, [(f"k{i}", str(i)) for i in range(30)])
        received = group.drain(len(produced), timeout_s=60)
    finally:
        group.close()
    assert sorted(len(p) for p in assignment.values()) == [1, 2]
    got = sorted((r.partition, r.offset) for rs in received.values() for r in rs)
    assert got == sorted((p.partition, p.offset) for p in produced)


def test_kafka_restart_keeps_port_and_data():
    with start_broker("kafka", settings={"group.initial.rebalance.delay.ms": 0}) as broker:
        topic = unique("restart")
        produce(broker, topic, [("k", "before restart")])
        before = broker.bootstrap_servers
        broker.restart()
        assert broker.bootstrap_servers == before
        produce(broker, topic, [("k", "after restart")])
        consumer = KafkaConsumer(topic, **broker.clients(group_id=unique("g"), auto_offset_reset="earliest"))
        values: list[bytes] = []
        deadline = Deadline(60)
        while len(values) < 2 and not deadline.expired():
            for records in consumer.poll(timeout_ms=200).values():
                values += [r.value for r in records]
        consumer.close()
        assert values == [b"before restart", b"after restart"]


@pytest.mark.tansu
def test_tansu_cannot_restart(tansu_broker):
    with pytest.raises(NotCapable):
        tansu_broker.restart()


@pytest.mark.parametrize("kind", ["kafka", pytest.param("tansu", marks=pytest.mark.tansu)])
def test_stop_leaves_no_process(kind):
    with start_broker(kind) as broker:
        port = broker.bootstrap_servers.rsplit(":", 1)[1]
        marker = str(broker.log_path.parent) if kind == "kafka" else f"127.0.0.1:{port}"
        assert processes_matching(marker), "the broker should be running"
    assert wait_gone(marker) == []


@pytest.mark.parametrize("kind", ["kafka", pytest.param("tansu", marks=pytest.mark.tansu)])
def test_sigkilled_parent_leaves_no_broker(kind, tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        from offsetlab.brokers import start_broker
        with start_broker({kind!r}) as b:
            print(b.bootstrap_servers, b.log_path, flush=True)
            time.sleep(600)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline().split()
        assert line, "the parent did not start its broker"
        bootstrap, log_path = line
        marker = str(Path(log_path).parent) if kind == "kafka" else bootstrap
        assert processes_matching(marker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_gone(marker, timeout_s=40) == []
    finally:
        if parent.poll() is None:
            parent.kill()


def test_cli_broker_up_stops_on_ctrl_c():
    proc = subprocess.Popen([sys.executable, "-m", "offsetlab", "broker", "up", "--kind", "kafka"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = Deadline(120)
        while not deadline.expired():
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("log:") or not line:
                break
        version = next(x for x in lines if x.startswith("version:")).split()[1]
        bootstrap = next(x for x in lines if x.startswith("bootstrap:")).split()[1]
        assert version.startswith("4.") and bootstrap.startswith("127.0.0.1:")
        marker = str(Path(next(x for x in lines if x.startswith("log:")).split()[1]).parent)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert wait_gone(marker) == []
    finally:
        if proc.poll() is None:
            proc.kill()


def test_testcontainers_when_docker_answers():
    from offsetlab.brokers.docker import docker_ping

    ok, why = docker_ping()
    if not ok:
        pytest.skip(f"testcontainers needs Docker: {why}")
    with start_broker("testcontainers") as broker:
        assert round_trip(broker)


def test_external_needs_an_answer():
    from offsetlab.brokers import BrokerUnreachable
    from offsetlab.brokers.process import free_port

    with pytest.raises(BrokerUnreachable, match="127.0.0.1"):
        with start_broker("external", bootstrap_servers=f"127.0.0.1:{free_port()}"):
            pass


def test_settings_need_kind_kafka_even_through_external(kafka_broker):
    with pytest.raises(NotCapable):
        with start_broker("external", bootstrap_servers=kafka_broker.bootstrap_servers,
                          settings={"x": 1}):
            pass


def test_a_kafka_start_is_not_fooled_by_another_broker_on_its_port(kafka_broker, monkeypatch):
    """Two brokers starting at once: when another broker takes the port this one chose
    (between its free-port check and its bind), the start must not report ready because that
    other broker answers there (E02 once ran its auto-create-off scenario on such a broker).
    Here the other broker is the session's, already listening on the port."""
    from offsetlab.brokers import PortInUse
    from offsetlab.brokers import kafka as kafka_mod

    taken = int(kafka_broker.bootstrap_servers.rsplit(":", 1)[1])
    monkeypatch.setattr(kafka_mod, "ensure_port_free", lambda port, host="127.0.0.1": None)
    monkeypatch.setattr(kafka_mod, "free_port", iter([taken, kafka_mod.free_port()]).__next__)
    broker = kafka_mod.KafkaBroker(start_timeout_s=60)
    try:
        with pytest.raises(PortInUse):
            broker.start()
    finally:
        broker.close()
