"""A three-node KRaft cluster really runs here: replication defaults, acks=all through the
SIGKILL of a partition leader, the killed node's restart and catch-up, a graceful node stop,
no java left behind (by pid), and ``offsetlab broker up --nodes 3`` under SIGINT and SIGKILL.

One cluster for the module (cold start about 10 s on an idle 2-core machine); the tests run in
file order and the last in-process one closes it. Measured times are printed (``-s``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from offsetlab.brokers import start_broker
from offsetlab.brokers.kafka_cluster import ClusterHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.lab.raw import unique

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def java_pids_under(folder: str) -> list[int]:
    """Java processes whose command line names ``folder`` (a cluster's workdir)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "java" in cmd.split(" ", 1)[0] and folder in cmd and alive(int(pid)):
            out.append(int(pid))
    return out


def wait_until(predicate, timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = Deadline(timeout_s)
    while not predicate():
        if deadline.expired():
            return False
        time.sleep(interval_s)
    return True


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterHandle]:
    t0 = time.monotonic()
    with start_broker("kafka", nodes=3, settings={"group.initial.rebalance.delay.ms": 0}) as handle:
        print(f"\ncluster cold start (format + start): {time.monotonic() - t0:.1f} s, "
              f"ready after start: {handle.cold_start_s:.1f} s")
        assert isinstance(handle, ClusterHandle)
        yield handle


@pytest.fixture(scope="module")
def topic(cluster) -> str:
    """Three partitions, replication factor and min.insync.replicas from the cluster's defaults."""
    name = unique("cluster")
    admin = KafkaAdminClient(**cluster.clients())
    try:
        admin.create_topics([NewTopic(name, 3, -1)])  # -1: the broker's default.replication.factor
    finally:
        admin.close()
    assert wait_until(lambda: len(cluster.leaders([name])) == 3, 30)
    return name


def test_cluster_ready_lists_three_brokers(cluster):
    addresses = cluster.bootstrap_servers.split(",")
    assert len(addresses) == 3 and len(set(addresses)) == 3
    assert cluster.node_ids == [1, 2, 3] and list(cluster.addresses.values()) == addresses
    assert cluster.log_path == cluster.log_paths[1] and len(set(cluster.log_paths.values())) == 3
    for address in addresses:  # every node answers, for this cluster, with all three brokers
        admin = KafkaAdminClient(bootstrap_servers=address)
        try:
            described = admin.describe_cluster()
        finally:
            admin.close()
        assert described["cluster_id"] == cluster.cluster.cluster_id
        assert sorted(b["broker_id"] for b in described["brokers"]) == [1, 2, 3]
    pids = cluster.pids()
    assert sorted(pids) == [1, 2, 3] and all(alive(p) for p in pids.values())
    assert all(cluster.node_running(i) for i in (1, 2, 3)) and cluster.running


def test_topic_gets_rf3_and_min_isr2_and_acks_all_works(cluster, topic):
    described = cluster.cluster.describe_topics([topic])[0]
    assert all(sorted(p["replica_nodes"]) == [1, 2, 3] for p in described["partitions"])
    admin = KafkaAdminClient(**cluster.clients())
    try:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                         config_filter="all")["topic"][topic]
    finally:
        admin.close()
    assert configs["min.insync.replicas"]["value"] == "2"
    producer = KafkaProducer(**cluster.clients(acks="all"))
    try:
        metas = [producer.send(topic, value=f"v{i}".encode(), partition=i % 3).get(30) for i in range(9)]
    finally:
        producer.close()
    assert sorted(m.partition for m in metas) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert cluster.under_replicated([topic]) == []


class SteadyProducer:
    """Sends to one partition with acks=all, one message at a time, and keeps the ack times."""

    def __init__(self, cluster, topic: str, partition: int) -> None:
        self.producer = KafkaProducer(**cluster.clients(acks="all", delivery_timeout_ms=120_000))
        self.topic, self.partition = topic, partition
        self.acked: list[tuple[float, float, bytes]] = []  # (sent at, acked at, value)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            value = f"steady-{i}".encode()
            sent = time.monotonic()
            try:
                self.producer.send(self.topic, value=value, partition=self.partition).get(130)
                self.acked.append((sent, time.monotonic(), value))
            except Exception as exc:  # noqa: BLE001 - recorded, asserted on
                self.errors.append(repr(exc))
            i += 1
            time.sleep(0.05)

    def __enter__(self) -> SteadyProducer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(140)
        self.producer.close()

    def acks_after(self, t: float) -> int:
        """Acknowledged messages sent after ``t``."""
        return sum(1 for sent, _, _ in self.acked if sent > t)


def test_leader_sigkill_acks_all_keeps_going_and_the_node_catches_up(cluster, topic):
    tp0 = (topic, 0)
    leader = cluster.leaders([topic])[tp0]
    with SteadyProducer(cluster, topic, 0) as steady:
        assert wait_until(lambda: steady.acks_after(0) >= 5, 30)
        jvm = cluster.pids()[leader]
        guard = cluster.cluster.node(leader).proc.proc.pid
        t_kill = time.monotonic()
        assert cluster.kill_node(leader) == jvm
        assert not cluster.node_running(leader)
        assert wait_until(lambda: not alive(jvm), 10), "the JVM survived its SIGKILL"
        assert not alive(guard), "the guard of a killed JVM must exit (not restart it, not linger)"
        # a new leader, from the in-sync replicas, once the controller fences the dead node
        # (broker.session.timeout.ms, 9 s)
        assert wait_until(lambda: cluster.leaders([topic])[tp0] not in (leader, -1), 60)
        t_elected = time.monotonic()
        assert wait_until(lambda: steady.acks_after(t_kill) >= 5, 60), steady.errors
        first_ack = min(at for sent, at, _ in steady.acked if sent > t_kill)
        longest = max(at - sent for sent, at, _ in steady.acked)
        assert cluster.node_running(leader) is False and jvm not in cluster.pids().values()
        t_start = time.monotonic()
        registered = cluster.start_node(leader)
        caught_up = cluster.wait_fully_replicated(90)
        t_full = time.monotonic()
        assert cluster.under_replicated() == []
        assert all(leader in p["isr_nodes"] for p in cluster.cluster.describe_topics([topic])[0]["partitions"])
        time.sleep(0.5)
    assert steady.errors == []
    print(f"\nkill -> new leader in metadata: {t_elected - t_kill:.1f} s; kill -> first acks=all ack of a "
          f"message sent after the kill: {first_ack - t_kill:.1f} s (longest send-to-ack {longest:.1f} s); restart -> registered {registered:.1f} s, -> fully replicated "
          f"{t_full - t_start:.1f} s (wait after registered {caught_up:.1f} s); acks {len(steady.acked)}")
    # acks=all with min.insync.replicas=2: every acknowledged message survived the leader's death
    consumer = KafkaConsumer(**cluster.clients(enable_auto_commit=False))
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    seen: set[bytes] = set()
    deadline = Deadline(30)
    wanted = {v for _, _, v in steady.acked}
    while not wanted <= seen and not deadline.expired():
        for records in consumer.poll(timeout_ms=500).values():
            seen.update(r.value for r in records)
    consumer.close()
    assert wanted - seen == set()


def test_graceful_stop_of_a_node_hands_its_leaders_over(cluster, topic):
    """The node stays down: close() must then stop two nodes, and acks=all still works on two
    of three (min.insync.replicas=2). A restart on its ports and data is tested above."""
    node = 3
    jvm = cluster.pids()[node]
    t0 = time.monotonic()
    cluster.stop_node(node)
    stopped = time.monotonic() - t0
    assert not cluster.node_running(node) and not alive(jvm)
    # a controlled shutdown hands leadership over before the node goes
    assert node not in cluster.leaders([topic]).values()
    producer = KafkaProducer(**cluster.clients(acks="all"))
    try:
        for partition in range(3):
            producer.send(topic, value=b"two of three", partition=partition).get(60)
    finally:
        producer.close()
    print(f"\ngraceful stop of node {node}: {stopped:.1f} s")


def test_close_leaves_no_java(cluster):
    pids = list(cluster.pids().values())
    workdir = cluster.cluster.workdir
    assert len(pids) == 2  # node 3 was stopped above
    t0 = time.monotonic()
    cluster.cluster.close()
    print(f"\nclose: {time.monotonic() - t0:.1f} s")
    assert [p for p in pids if alive(p)] == []
    assert java_pids_under(str(workdir)) == []
    assert not workdir.exists()


def cli_cluster() -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "offsetlab", "broker", "up", "--kind", "kafka", "--nodes", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_until_ready(proc: subprocess.Popen[str]) -> list[str]:
    lines: list[str] = []
    deadline = Deadline(150)
    while not deadline.expired():
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith("Ctrl-C") or not line:
            break
    return lines


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_cli_cluster_sigkilled_while_its_nodes_start_leaves_no_java():
    """SIGKILL of ``broker up --nodes 3`` once its three JVMs run (each under a guard whose
    parent is the CLI), without waiting for the cluster to be ready: the guards see their
    parent go and stop the JVMs (the same path as for a ready cluster, at a fifth of its cost)."""
    proc = cli_cluster()
    try:
        jvms: list[int] = []

        def three_jvms() -> bool:
            jvms[:] = [j for g in children(proc.pid) for j in children(g)]
            return len(jvms) == 3

        assert wait_until(three_jvms, 120), jvms
        assert all("kafka.Kafka" in Path(f"/proc/{j}/cmdline").read_bytes().decode(errors="replace")
                   for j in jvms)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        assert wait_until(lambda: not any(alive(j) for j in jvms), 40), [j for j in jvms if alive(j)]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_cluster_up_prints_every_node_and_stops_them_on_ctrl_c():
    proc = cli_cluster()
    try:
        lines = read_until_ready(proc)
        bootstrap = next(x for x in lines if x.startswith("bootstrap:")).split()[1].split(",")
        nodes = [x.split() for x in lines if x.startswith("node ")]
        assert len(bootstrap) == 3 and [n[2] for n in nodes] == bootstrap, lines
        assert [n[1] for n in nodes] == ["1:", "2:", "3:"] and all(Path(n[4]).exists() for n in nodes)
        workdir = str(Path(nodes[0][4]).parent.parent)
        assert len(java_pids_under(workdir)) == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0
        assert java_pids_under(workdir) == []
    finally:
        if proc.poll() is None:
            proc.kill()
