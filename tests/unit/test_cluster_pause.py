"""KafkaCluster.pause_node / resume_node: SIGSTOP and SIGCONT of a node's process (here a
``sleep`` standing in for the JVM), and a frozen node is resumed before any stop."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from offsetlab.brokers.kafka_cluster import KafkaCluster, KafkaNode


class FakeProc:
    """The part of GuardedProcess the cluster uses, over a real child process."""

    def __init__(self) -> None:
        self.child = subprocess.Popen(["sleep", "30"])
        self.stopped_while: list[str] = []

    @property
    def child_pid(self) -> int | None:
        return self.child.pid if self.child.poll() is None else None

    @property
    def running(self) -> bool:
        return self.child.poll() is None

    def terminate(self) -> None:
        self.stopped_while.append(state(self.child.pid))

    def stop(self) -> int | None:
        self.child.kill()
        return self.child.wait(5)

    def kill(self) -> int | None:
        return self.stop()


def state(pid: int) -> str:
    """The process state letter (S sleeping, T stopped, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_state(pid: int, letter: str) -> str:
    for _ in range(100):
        if state(pid) == letter:
            break
        time.sleep(0.01)
    return state(pid)


@pytest.fixture
def cluster(tmp_path):
    c = KafkaCluster.__new__(KafkaCluster)
    c.nodes = [KafkaNode(i, tmp_path / f"n{i}", 10000 + i, 20000 + i) for i in (1, 2, 3)]
    for n in c.nodes:
        n.proc = FakeProc()  # type: ignore[assignment]
    yield c
    for n in c.nodes:
        if n.proc is not None:
            n.proc.child.send_signal(18)  # type: ignore[attr-defined]  # SIGCONT
            n.proc.stop()


def test_pause_freezes_and_resume_thaws(cluster) -> None:
    pid = cluster.pause_node(2)
    assert pid == cluster.node(2).pid
    assert wait_state(pid, "T") == "T"
    assert cluster.paused_nodes() == [2]
    assert cluster.resume_node(2) == pid
    assert wait_state(pid, "S") == "S"
    assert cluster.paused_nodes() == []


def test_stop_resumes_frozen_nodes_first(cluster) -> None:
    procs = [n.proc for n in cluster.nodes]
    cluster.pause_node(1)
    cluster.pause_node(3)
    cluster.stop()
    assert all(p.stopped_while and p.stopped_while[0] != "T" for p in procs)
    assert all(not n.paused and n.proc is None for n in cluster.nodes)


def test_a_killed_node_is_no_longer_paused(cluster) -> None:
    cluster.pause_node(1)
    cluster.kill_node(1)
    assert not cluster.node(1).paused and cluster.paused_nodes() == []
    with pytest.raises(RuntimeError, match="not running"):
        cluster.pause_node(1)
