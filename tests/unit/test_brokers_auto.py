"""The `auto` broker choice and the broker error messages, with fakes (no broker)."""

from __future__ import annotations

import socket
import subprocess

import pytest
from offsetlab.brokers import NotCapable, PortInUse, choose_kind, jars, start_broker
from offsetlab.brokers.errors import BrokerExited, JarsUnavailable, JavaNotFound
from offsetlab.brokers.process import GuardedProcess, ensure_port_free


def probes(*, env=None, docker=(False, "no daemon"), java=(True, "Java 17")):
    return dict(env_bootstrap=lambda: env, docker=lambda: docker, java=lambda: java)


def test_auto_prefers_given_bootstrap_servers():
    choice = choose_kind("10.0.0.9:9092", **probes(docker=(True, "up")))
    assert (choice.kind, choice.bootstrap_servers) == ("external", "10.0.0.9:9092")


def test_auto_uses_environment_bootstrap():
    choice = choose_kind(None, **probes(env="h:1"))
    assert choice.kind == "external" and choice.bootstrap_servers == "h:1"


def test_auto_docker_then_java_then_tansu():
    assert choose_kind(None, **probes(docker=(True, "Docker answered"))).kind == "testcontainers"
    kafka = choose_kind(None, **probes())
    assert kafka.kind == "kafka"
    assert any("testcontainers skipped: no daemon" in r for r in kafka.reasons)
    tansu = choose_kind(None, **probes(java=(False, "no java on PATH")))
    assert tansu.kind == "tansu"
    assert "kafka skipped: no java on PATH" in tansu.explain()


def test_docker_ping_reports_absence_here():
    from offsetlab.brokers.docker import docker_ping

    ok, why = docker_ping(timeout_s=1)
    # This machine has no Docker engine; where one answers the test says so instead.
    assert isinstance(ok, bool) and why


def test_unknown_kind_and_settings_on_unconfigurable_kind():
    with pytest.raises(ValueError, match="unknown broker kind"):
        with start_broker("zookeeper"):
            pass
    with pytest.raises(NotCapable, match="need kind 'kafka'"):
        with start_broker("tansu", settings={"auto.create.topics.enable": False}):
            pass


def test_port_in_use_names_the_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortInUse, match=f"127.0.0.1:{port}"):
            ensure_port_free(port)


def test_no_java_names_the_fix(monkeypatch, tmp_path):
    from offsetlab.brokers import kafka

    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nojava"))
    with pytest.raises(JavaNotFound, match="OpenJDK 17"):
        kafka.java_binary()


def test_jars_unavailable_without_maven(monkeypatch, tmp_path):
    monkeypatch.setenv("OFFSETLAB_CACHE", str(tmp_path))
    monkeypatch.delenv("OFFSETLAB_KAFKA_LIBS", raising=False)
    monkeypatch.setattr(jars.shutil, "which", lambda name: None)
    with pytest.raises(JarsUnavailable, match="Maven"):
        jars.ensure_kafka_jars("4.1.1")


def test_broker_that_exits_while_starting_shows_its_log(tmp_path):
    proc = GuardedProcess(["sh", "-c", "echo 'fatal: bad config'; exit 3"], log_path=tmp_path / "b.log",
                          name="fake broker")
    proc.start()
    with pytest.raises(BrokerExited) as info:
        proc.wait_ready("127.0.0.1:1", timeout_s=20)
    assert "status 3" in str(info.value) and "fatal: bad config" in info.value.log_tail


def test_guard_stops_child_when_parent_pipe_closes(tmp_path):
    """The guard's child dies when the guard's stdin hits EOF (parent gone)."""
    pidfile = tmp_path / "pid"
    proc = GuardedProcess(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 300"], log_path=tmp_path / "l")
    proc.start()
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        subprocess.run(["sleep", "0.05"])
    child = int(pidfile.read_text())
    assert proc.proc is not None and proc.proc.stdin is not None
    proc.proc.stdin.close()  # what the kernel does when the parent dies
    proc.proc.wait(timeout=30)
    for _ in range(100):
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().split()[2] == "Z":
                    break
        except FileNotFoundError:
            break
        subprocess.run(["sleep", "0.05"])
    else:
        pytest.fail(f"child {child} still alive after its guard lost its parent")
