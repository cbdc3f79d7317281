"""A KRaft cluster of N Apache Kafka nodes from the same jars as :mod:`.kafka` (N = 3 by default).

**Combined mode**: every node is broker *and* controller, and the N nodes are the static
voters (``controller.quorum.voters``). Dedicated controllers would double the JVMs (three
controllers next to three brokers) on a 2-core machine that also runs the tests; with
combined nodes a cluster is three JVMs, and a killed node is also a killed voter, which the
quorum of three survives one at a time (two of three vote). Killing the node that is the
active controller adds a controller election (about ``quorum.fetch.timeout.ms``, 2 s) to the
partition leaders' failover, as on a real combined cluster.

**Heap**: ``-Xms128m -Xmx384m`` per node (single node: 768 MB), at most about 1.2 GB of heap
for the cluster; measured RSS about 300 MB per node, right after the start and after 20 000
``acks=all`` messages alike (2-core, 24 GB machine at load average 20).

**Defaults**: :data:`CLUSTER_SETTINGS` over the single node's :data:`~.kafka.DEFAULT_SETTINGS`:
replication factor 3 for new topics and the internal ones, ``min.insync.replicas=2``
(and ``transaction.state.log.min.isr=2``), so an ``acks=all`` producer survives one node
down and cannot write with two down (not tested: two down also leaves the controller quorum
without a majority). The single node's other defaults are kept, ``log.flush.interval.messages=1``
(an fsync per message) included. So are Kafka's own failure-detection settings: a SIGKILLed
node is fenced, and its partitions get new leaders, after ``broker.session.timeout.ms`` (9 s)
without a heartbeat; an ``acks=all`` producer saw its first acknowledgement 12-14 s after the
kill.

One ``StorageTool format`` per node, all with one cluster id; every node has its own ports
(client and controller) and data dir, runs under :mod:`.guard`, and can be stopped
(SIGTERM: controlled shutdown), killed (SIGKILL of the JVM), frozen and thawed
(``pause_node``/``resume_node``: SIGSTOP/SIGCONT of the JVM, a node that stops answering
without closing its connections; frozen nodes are thawed before any stop) and started again
on the same ports and data. Ready = every node answers a metadata request for this cluster id and the
metadata lists all N brokers.

>>> with start_broker("kafka", nodes=3) as cluster:
...     cluster.bootstrap_servers            # '127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3'
...     node = cluster.leaders()[(topic, 0)]
...     cluster.kill_node(node); cluster.start_node(node); cluster.wait_fully_replicated(60)
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BrokerExited, BrokerStartTimeout, PortInUse
from .handle import BrokerHandle, Capability
from .jars import KAFKA_VERSION, ensure_kafka_jars
from .kafka import DEFAULT_SETTINGS, JVM_OPTS, _props, format_storage, java17, new_cluster_id
from .process import GuardedProcess, ensure_port_free, free_port, log_tail

log = logging.getLogger(__name__)

#: Heap per node (see the module docstring).
HEAP = ["-Xms128m", "-Xmx384m"]
CLUSTER_JVM_OPTS = HEAP + [o for o in JVM_OPTS if not o.startswith(("-Xms", "-Xmx"))]

#: What a cluster changes in the single node's defaults.
CLUSTER_SETTINGS: dict[str, Any] = {
    "default.replication.factor": 3,
    "min.insync.replicas": 2,
    "offsets.topic.replication.factor": 3,
    "transaction.state.log.replication.factor": 3,
    "transaction.state.log.min.isr": 2,
    "share.coordinator.state.topic.replication.factor": 3,
    "share.coordinator.state.topic.min.isr": 2,
}


class KafkaNode:
    """One node of a :class:`KafkaCluster`: its ports, data dir, properties and process."""

    def __init__(self, node_id: int, workdir: Path, port: int, controller_port: int) -> None:
        self.node_id = node_id
        self.workdir = workdir
        self.port = port
        self.controller_port = controller_port
        self.address = f"127.0.0.1:{port}"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "broker.log"
        self.properties = workdir / "server.properties"
        self.proc: GuardedProcess | None = None
        #: SIGSTOPped by :meth:`KafkaCluster.pause_node` and not yet resumed
        self.paused = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs."""
        return self.proc.child_pid if self.proc is not None else None


class KafkaCluster:
    """Process management for N embedded Kafka nodes; use through
    ``start_broker("kafka", nodes=3)`` or directly (``start()`` ... ``close()``).

    Nodes are named by their ``node.id``, 1..N, in every method and in :meth:`leaders`.
    """

    kind = "kafka"

    def __init__(self, nodes: int = 3, settings: Mapping[str, Any] | None = None, *,
                 workdir: Path | None = None, version: str = KAFKA_VERSION,
                 start_timeout_s: float = 120.0) -> None:
        if nodes < 3:
            raise ValueError(f"a cluster has at least 3 nodes (replication factor 3), not {nodes}; "
                             "one node is start_broker('kafka')")
        self.version = version
        self.start_timeout_s = start_timeout_s
        self.java = java17()
        self.libs = ensure_kafka_jars(version)
        self._tmp = tempfile.TemporaryDirectory(prefix="offsetlab-kcluster-") if workdir is None else None
        self.workdir = Path(self._tmp.name) if self._tmp else Path(workdir)  # type: ignore[arg-type]
        self.settings = {**DEFAULT_SETTINGS, **CLUSTER_SETTINGS, **dict(settings or {})}
        ports: set[int] = set()
        while len(ports) < 2 * nodes:  # distinct even if the OS hands a port out twice
            ports.add(free_port())
        plist = sorted(ports)
        self.nodes = [KafkaNode(i + 1, self.workdir / f"node{i + 1}", plist[2 * i], plist[2 * i + 1])
                      for i in range(nodes)]
        self.bootstrap = ",".join(n.address for n in self.nodes)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        for n in self.nodes:
            n.workdir.mkdir(parents=True, exist_ok=True)
            n.properties.write_text(_props({
                "process.roles": "broker,controller",
                "node.id": n.node_id,
                "controller.quorum.voters": voters,
                "listeners": f"PLAINTEXT://{n.address},CONTROLLER://127.0.0.1:{n.controller_port}",
                "advertised.listeners": f"PLAINTEXT://{n.address}",
                "controller.listener.names": "CONTROLLER",
                "inter.broker.listener.name": "PLAINTEXT",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "log.dirs": str(n.data_dir),
                **self.settings,
            }))
        self.cluster_id = self._format()

    # -- set-up ------------------------------------------------------------------------------

    def _classpath(self) -> str:
        return str(self.libs / "*")

    def _format(self) -> str:
        """One ``StorageTool format`` per node (at once: each is a JVM start), one cluster id."""
        cluster_id = new_cluster_id()
        results: dict[int, str | BaseException] = {}

        def one(n: KafkaNode) -> None:
            try:
                results[n.node_id] = format_storage(self.java, self._classpath(), n.properties,
                                                    n.data_dir, cluster_id)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                results[n.node_id] = exc

        threads = [threading.Thread(target=one, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for value in results.values():
            if isinstance(value, BaseException):
                raise value
        if set(results.values()) != {cluster_id}:
            raise BrokerExited(f"the nodes' data dirs hold different cluster ids: {results}")
        return cluster_id

    def node(self, node_id: int) -> KafkaNode:
        if not 1 <= node_id <= len(self.nodes):
            raise ValueError(f"no node {node_id}; nodes are 1..{len(self.nodes)}")
        return self.nodes[node_id - 1]

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, n: KafkaNode) -> None:
        if n.running:
            raise RuntimeError(f"node {n.node_id} is running")
        ensure_port_free(n.port)
        ensure_port_free(n.controller_port)
        n.proc = GuardedProcess(
            [self.java, *CLUSTER_JVM_OPTS, "-cp", self._classpath(), "kafka.Kafka", str(n.properties)],
            log_path=n.log_path, cwd=n.workdir, name=f"kafka {self.version} node {n.node_id}",
        )
        n.proc.start()

    def _wait_ready(self, nodes: list[KafkaNode], t0: float) -> float:
        deadline = t0 + self.start_timeout_s
        waiting = list(nodes)
        while waiting:
            for n in list(waiting):
                if not n.running:
                    tail = log_tail(n.log_path, 200)
                    if "Address already in use" in tail:
                        raise PortInUse(f"port {n.port} or {n.controller_port} of node {n.node_id} was "
                                        "taken while it started; start again (ports are random)")
                    raise BrokerExited(f"kafka node {n.node_id} exited while starting; see {n.log_path}",
                                       log_tail=log_tail(n.log_path))
                if self._node_ready(n, sum(m.running for m in self.nodes)):
                    waiting.remove(n)
            if not waiting:
                break
            if time.monotonic() > deadline:
                names = ", ".join(f"node {n.node_id} ({n.log_path})" for n in waiting)
                raise BrokerStartTimeout(
                    f"{names} did not answer a metadata request listing every running broker of "
                    f"cluster {self.cluster_id} within {self.start_timeout_s:.0f} s\n"
                    f"{log_tail(waiting[0].log_path)}")
            time.sleep(0.3)
        return time.monotonic() - t0

    def _node_ready(self, n: KafkaNode, brokers: int) -> bool:
        """``n`` answers a metadata request of this cluster that lists ``brokers`` brokers."""
        # a kafka-python admin client that fails to bootstrap leaves its network thread behind
        # (26 threads per cluster start without this check): first, is the port open at all?
        try:
            socket.create_connection(("127.0.0.1", n.port), timeout=1.0).close()
        except OSError:
            return False
        try:
            admin = self._admin(n.address, timeout_s=1.0)
        except Exception:  # noqa: BLE001 - not ready yet
            return False
        try:
            cluster = admin.describe_cluster()
            return (cluster.get("cluster_id") == self.cluster_id
                    and len(cluster.get("brokers") or []) == brokers)
        except Exception:  # noqa: BLE001
            return False
        finally:
            _close_quietly(admin)

    def start(self) -> float:
        """Start every node that is not running, at once; return seconds until all are ready."""
        t0 = time.monotonic()
        starting = [n for n in self.nodes if not n.running]
        for n in starting:
            self._spawn(n)
        return self._wait_ready(self.nodes, t0)

    def start_node(self, node_id: int) -> float:
        """Start a stopped or killed node again on its ports and data; return seconds until
        it answers a metadata request listing every running node (it has registered; it may
        not be in sync yet: see :meth:`wait_fully_replicated`)."""
        t0 = time.monotonic()
        n = self.node(node_id)
        self._spawn(n)
        return self._wait_ready([n], t0)

    def stop_node(self, node_id: int) -> None:
        """Stop a node gracefully (SIGTERM: controlled shutdown; SIGKILL after the guard's grace)."""
        n = self.node(node_id)
        if n.paused:
            self.resume_node(node_id)
        if n.proc is not None:
            n.proc.stop()
            n.proc = None

    def kill_node(self, node_id: int) -> int | None:
        """SIGKILL the node's JVM (not the guard, which then exits without restarting it);
        returns the killed JVM's pid."""
        n = self.node(node_id)
        pid = n.pid
        if n.proc is not None:
            n.proc.kill()
            n.proc = None
        n.paused = False
        return pid

    def pause_node(self, node_id: int) -> int:
        """Freeze the node's JVM (SIGSTOP): it keeps its sockets (the kernel still accepts
        connections and buffers what peers send it) but answers nothing, fetches nothing and
        heartbeats to no one until :meth:`resume_node`. A node is also a controller voter: two
        of three frozen leave the quorum without a majority while they are. Returns the pid."""
        n = self.node(node_id)
        pid = n.pid
        if pid is None:
            raise RuntimeError(f"node {node_id} is not running")
        os.kill(pid, signal.SIGSTOP)
        n.paused = True
        return pid

    def resume_node(self, node_id: int) -> int | None:
        """SIGCONT a node :meth:`pause_node` froze; returns its pid (None: no longer runs)."""
        n = self.node(node_id)
        pid = n.pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        n.paused = False
        return pid

    def paused_nodes(self) -> list[int]:
        return [n.node_id for n in self.nodes if n.paused and n.running]

    def _resume_all(self) -> None:
        """Before a stop: a frozen JVM would hold SIGTERM pending until the guard's grace ran out."""
        for n in self.nodes:
            if n.paused:
                try:
                    self.resume_node(n.node_id)
                except ProcessLookupError:
                    n.paused = False

    def node_running(self, node_id: int) -> bool:
        return self.node(node_id).running

    @property
    def running(self) -> bool:
        """Every node runs."""
        return all(n.running for n in self.nodes)

    def pids(self) -> dict[int, int]:
        """node id -> JVM pid, of the nodes that run."""
        return {n.node_id: pid for n in self.nodes if (pid := n.pid) is not None}

    def stop(self) -> None:
        """Stop every node, all at once (one at a time, the last ones would wait for a
        quorum that has gone); frozen nodes are resumed first."""
        self._resume_all()
        procs = [n.proc for n in self.nodes if n.proc is not None]
        for p in procs:
            p.terminate()
        for n in self.nodes:
            if n.proc is not None:
                n.proc.stop()
                n.proc = None

    def restart(self, *, down_s: float = 0.0) -> float:
        """Stop every node and start them all again (same ports, same data)."""
        self.stop()
        if down_s:
            time.sleep(down_s)
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- metadata ----------------------------------------------------------------------------

    def _admin(self, bootstrap: str | None = None, timeout_s: float = 5.0) -> Any:
        from kafka import KafkaAdminClient

        if bootstrap is None:
            bootstrap = ",".join(n.address for n in self.nodes if n.running) or self.bootstrap
        ms = int(timeout_s * 1000)
        return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=ms, bootstrap_timeout_ms=ms)

    def describe_topics(self, topics: list[str] | None = None, *, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """kafka-python's ``describe_topics`` (every topic, internal ones included, by default),
        asked of the running nodes. Retried for up to ``timeout_s``: until a killed node is
        fenced (``broker.session.timeout.ms``), the metadata still lists it and the admin
        client may send its request there."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                admin = self._admin()
            except Exception:  # noqa: BLE001 - retried below
                if time.monotonic() > deadline:
                    raise
            else:
                try:
                    return list(admin.describe_topics(topics))
                except Exception:  # noqa: BLE001 - retried below
                    if time.monotonic() > deadline:
                        raise
                finally:
                    _close_quietly(admin)
            time.sleep(0.2)

    def leaders(self, topics: list[str] | None = None) -> dict[tuple[str, int], int]:
        """(topic, partition) -> node id of its leader; -1 (Kafka's value) while it has none."""
        return {(t["name"], p["partition_index"]): p["leader_id"]
                for t in self.describe_topics(topics) for p in t["partitions"]}

    def under_replicated(self, topics: list[str] | None = None) -> list[tuple[str, int]]:
        """Partitions whose in-sync replicas are fewer than their replicas."""
        return sorted((t["name"], p["partition_index"]) for t in self.describe_topics(topics)
                      for p in t["partitions"] if len(p["isr_nodes"]) < len(p["replica_nodes"]))

    def wait_fully_replicated(self, timeout_s: float = 60.0, topics: list[str] | None = None) -> float:
        """Wait until no partition is under-replicated (and every one has a leader); seconds waited."""
        t0 = time.monotonic()
        last: Any = None
        while True:
            try:
                described = self.describe_topics(topics)
                last = sorted((t["name"], p["partition_index"]) for t in described for p in t["partitions"]
                              if len(p["isr_nodes"]) < len(p["replica_nodes"]) or p["leader_id"] < 0)
                if not last:
                    return time.monotonic() - t0
            except Exception as exc:  # noqa: BLE001 - a node may be coming up
                last = exc
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"still under-replicated after {timeout_s:.0f} s: {last}")
            time.sleep(0.5)

    def handle(self, cold_start_s: float) -> ClusterHandle:
        return ClusterHandle(
            kind=self.kind, bootstrap_servers=self.bootstrap, version=self.version,
            log_path=self.nodes[0].log_path,
            capabilities=frozenset({Capability.CONFIGURABLE, Capability.RESTARTABLE, Capability.PERSISTENT}),
            cold_start_s=cold_start_s, settings=dict(self.settings), _impl=self,
            log_paths={n.node_id: n.log_path for n in self.nodes},
            addresses={n.node_id: n.address for n in self.nodes},
        )


@dataclass
class ClusterHandle(BrokerHandle):
    """A running :class:`KafkaCluster`: a :class:`BrokerHandle` (``bootstrap_servers`` lists
    every node, ``log_path`` is node 1's log; ``restart()``/``stop()``/``start()`` act on every
    node) plus the per-node controls of the cluster."""

    log_paths: dict[int, Path] = field(default_factory=dict)
    addresses: dict[int, str] = field(default_factory=dict)

    @property
    def cluster(self) -> KafkaCluster:
        return self._impl

    @property
    def node_ids(self) -> list[int]:
        return sorted(self.addresses)

    def stop_node(self, node_id: int) -> None:
        self.cluster.stop_node(node_id)

    def kill_node(self, node_id: int) -> int | None:
        return self.cluster.kill_node(node_id)

    def start_node(self, node_id: int) -> float:
        return self.cluster.start_node(node_id)

    def node_running(self, node_id: int) -> bool:
        return self.cluster.node_running(node_id)

    def pause_node(self, node_id: int) -> int:
        return self.cluster.pause_node(node_id)

    def resume_node(self, node_id: int) -> int | None:
        return self.cluster.resume_node(node_id)

    def pids(self) -> dict[int, int]:
        return self.cluster.pids()

    def leaders(self, topics: list[str] | None = None) -> dict[tuple[str, int], int]:
        return self.cluster.leaders(topics)

    def under_replicated(self, topics: list[str] | None = None) -> list[tuple[str, int]]:
        return self.cluster.under_replicated(topics)

    def wait_fully_replicated(self, timeout_s: float = 60.0, topics: list[str] | None = None) -> float:
        return self.cluster.wait_fully_replicated(timeout_s, topics)


def _close_quietly(admin: Any) -> None:
    try:
        admin.close()
    except Exception:  # noqa: BLE001
        pass
