"""``offsetlab chaos`` on a real Kafka broker: consumers SIGKILLed, the broker restarted,
handlers failing and rejecting; on a three-node cluster (marked slow) a partition leader
SIGKILLed.

Each test starts its own broker (the run restarts it, which the session broker must not
suffer). Nothing here asserts a speed: the numbers that matter are *lost* (must be 0), the
dead letters, the committed offsets, and that the printed accounting agrees with
``chaos.json``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from offsetlab.bus.deadline import Deadline

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _value(text: str, name: str) -> int:
    m = re.search(rf"^{name}: (\d+)", text, re.MULTILINE)
    assert m, f"no '{name}:' line in:\n{text}"
    return int(m.group(1))


def _bound(text: str) -> int:
    m = re.search(r"^duplicated: \d+ \(.*; bound (\d+) = ", text, re.MULTILINE)
    assert m, text
    return int(m.group(1))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _env(runs: Path) -> dict[str, str]:
    return dict(os.environ, OFFSETLAB_RUNS_DIR=str(runs), PYTHONUNBUFFERED="1")


# Generous outer limits: a slow but correct run must report, not die of a timeout (its own
# budgets: broker start, worker joins, 8 s of publishing, a broker restart, a 6 s session
# timeout after the kill, a drain of at most 60 s, stopping the workers).
@pytest.mark.timeout(320)
def test_chaos_run_loses_nothing_through_a_kill_and_a_broker_restart(tmp_path: Path) -> None:
    run_id = "chaos-it"
    cmd = [sys.executable, "-m", "offsetlab", "chaos", "--events", "300", "--kills", "1",
           "--broker-restarts", "1", "--seed", "11", "--workers", "2", "--partitions", "4",
           "--publish-seconds", "8", "--drain-timeout", "60", "--run-id", run_id]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=_env(tmp_path))
    text = proc.stdout
    print(text)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{text}\n{proc.stderr[-3000:]}"

    produced, processed = _value(text, "produced"), _value(text, "processed")
    lost, duplicated = _value(text, "lost"), _value(text, "duplicated")
    assert lost == 0
    # the publisher re-publishes what was not acknowledged until it is: all 300 get there
    assert produced == _value(text, "acknowledged") == 300
    assert _value(text, "unacknowledged") == 0
    assert processed == produced
    assert "dead-lettered: 0 (expected 0)" in text
    assert "committed == end offsets: true" in text
    assert duplicated <= _bound(text)
    assert re.search(r"SIGKILL worker-\d", text), text
    assert "broker restarted" in text, text

    saved = json.loads((tmp_path / run_id / "chaos.json").read_text())
    assert (saved["produced"], saved["processed"], saved["lost"], saved["duplicated"]) == (
        produced, processed, lost, duplicated)
    assert [a["action"] for a in saved["actions"]].count("kill") == 1
    restarts = [a for a in saved["actions"] if a["action"] == "broker_restart"]
    assert len(restarts) == 1 and "error" not in restarts[0]
    # the files the accounting read: every handled event is one line in some worker's file
    lines = sum(len(p.read_text().split()) for p in (tmp_path / run_id / "chaos").glob("*.seq"))
    assert lines == processed + saved["redeliveries"] + saved["processed_unacknowledged"]
    # 2 first workers + 1 replacement, all gone: the victim by SIGKILL, the others stopped
    assert len(saved["workers"]) == 3
    assert sorted(w["returncode"] for w in saved["workers"]) == [-signal.SIGKILL, 0, 0]
    assert not [w for w in saved["workers"] if _alive(w["pid"])]


@pytest.mark.timeout(120)
def test_workers_die_with_the_orchestrator(tmp_path: Path) -> None:
    """SIGKILL ``offsetlab chaos`` itself mid-run: its workers (and broker) must not outlive it."""
    run_id = "chaos-orphans"
    cmd = [sys.executable, "-m", "offsetlab", "chaos", "--events", "100000", "--kills", "0",
           "--broker-restarts", "0", "--workers", "2", "--publish-seconds", "300",
           "--run-id", run_id]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO, env=_env(tmp_path))
    try:
        assert proc.stdout is not None
        deadline = Deadline(90)
        seen = []
        while not deadline.expired():
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "workers joined" in line:
                break
        assert any("workers joined" in s for s in seen), "".join(seen)
        logs = sorted((tmp_path / run_id / "chaos").glob("worker-*.log"))
        pids = [int(re.search(r"started pid=(\d+)", p.read_text()).group(1)) for p in logs]  # type: ignore[union-attr]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = Deadline(20)
        while any(_alive(pid) for pid in pids) and not deadline.expired():
            time.sleep(0.2)
        assert not [pid for pid in pids if _alive(pid)], "workers outlived the orchestrator"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.timeout(260)
def test_the_run_sees_loss_from_a_consumer_that_commits_before_handling(tmp_path: Path) -> None:
    """The negative control: ``--consumer unsafe`` commits each batch before handling it.
    Every worker holds its first committed batch unhandled until the kill has picked a
    holder, so the victim dies with committed, unhandled records whatever the timing: the
    run must report them lost (no more than the victim held) and exit 1."""
    run_id = "chaos-unsafe"
    cmd = [sys.executable, "-m", "offsetlab", "chaos", "--events", "2000", "--kills", "1",
           "--broker-restarts", "0", "--seed", "3", "--publish-seconds", "2", "--handle-ms", "5",
           "--consumer", "unsafe", "--drain-timeout", "15", "--run-id", run_id]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO,
                          env=_env(tmp_path))
    text = proc.stdout
    print(text)
    lost = _value(text, "lost")
    assert lost > 0, text
    assert proc.returncode == 1, text
    assert _value(text, "processed") == _value(text, "produced") - lost
    saved = json.loads((tmp_path / run_id / "chaos.json").read_text())
    assert saved["lost"] == lost and saved["exit_code"] == 1 and not saved["drained"]
    kills = [a for a in saved["actions"] if a["action"] == "kill"]
    assert len(kills) == 1 and "error" not in kills[0], kills
    assert 0 < lost <= kills[0]["committed_unhandled"], (lost, kills)


@pytest.mark.timeout(320)
def test_failing_handlers_and_poison_events_with_a_retry_topic_through_a_kill(tmp_path: Path) -> None:
    """Seeded retriable failures (10 % of deliveries) and 5 poison events, retried through a
    retry topic while a worker is SIGKILLed: nothing lost, every poison event dead-lettered
    once with its provenance, none processed, the group committed to the end of both topics."""
    run_id = "chaos-faults"
    cmd = [sys.executable, "-m", "offsetlab", "chaos", "--events", "400", "--kills", "1",
           "--broker-restarts", "0", "--seed", "5", "--workers", "2", "--partitions", "3",
           "--publish-seconds", "6", "--drain-timeout", "90", "--fail-rate", "0.1",
           "--poison", "5", "--retry", "retry-topic", "--run-id", run_id]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=_env(tmp_path))
    text = proc.stdout
    print(text)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{text}\n{proc.stderr[-3000:]}"
    assert _value(text, "lost") == 0 and _value(text, "unacknowledged") == 0
    assert _value(text, "processed") == 395
    assert "dead-lettered: 5 (expected 5)" in text
    assert "committed == end offsets: true" in text
    assert "retry: retry-topic: RetryTopicRetry(" in text
    saved = json.loads((tmp_path / run_id / "chaos.json").read_text())
    # the failures happened (the seeded draws hit about 10 % of some 400 deliveries) and
    # the poison was rejected once per input record (or again after the kill's redelivery)
    assert saved["failed_deliveries"] > 10, saved["failed_deliveries"]
    assert saved["rejected_deliveries"] >= 5
    assert saved["poison_processed"] == 0 and saved["dead_letter_problems"] == []
    assert saved["committed_at_end"] is True and saved["failures"] == []
    fails = sum(len(p.read_text().split()) for p in (tmp_path / run_id / "chaos").glob("*.fail"))
    assert fails == saved["failed_deliveries"]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_partition_leader_sigkilled_on_a_three_node_cluster(tmp_path: Path) -> None:
    """``--nodes 3 --broker-kills 1``: the node leading the most partitions is SIGKILLed
    and started again once its leaderships moved; nothing is lost."""
    run_id = "chaos-cluster"
    cmd = [sys.executable, "-m", "offsetlab", "chaos", "--events", "600", "--kills", "1",
           "--broker-restarts", "0", "--nodes", "3", "--broker-kills", "1", "--seed", "7",
           "--workers", "2", "--partitions", "3", "--publish-seconds", "15",
           "--drain-timeout", "180", "--fail-rate", "0.05", "--poison", "3",
           "--retry", "retry-topic", "--run-id", run_id]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=580, cwd=REPO,
                          env=_env(tmp_path))
    text = proc.stdout
    print(text)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{text}\n{proc.stderr[-3000:]}"
    assert _value(text, "lost") == 0 and _value(text, "unacknowledged") == 0
    assert "dead-lettered: 3 (expected 3)" in text
    assert "committed == end offsets: true" in text
    saved = json.loads((tmp_path / run_id / "chaos.json").read_text())
    kills = [a for a in saved["actions"] if a["action"] == "broker_kill"]
    assert len(kills) == 1 and "error" not in kills[0], kills
    kill = kills[0]
    # the victim led the most of the run's partitions, and lost its leaderships before it
    # came back
    assert kill["led"] == max(kill["leaders_before"].values())
    assert kill["leaders_moved_s"] is not None
    assert not [w for w in saved["workers"] if _alive(w["pid"])]


@pytest.mark.timeout(320)
def test_the_transactional_mode_with_a_topic_sink_duplicates_nothing_through_a_kill(
        tmp_path: Path) -> None:
    """``--consumer bus-eos --sink topic`` on one broker: a worker SIGKILLed mid-batch (its
    open transaction aborted by its replacement's init), handlers failing and rejecting:
    the output topic read committed holds every event exactly once."""
    run_id = "chaos-eos"
    cmd = [sys.executable, "-m", "offsetlab", "chaos", "--events", "400", "--kills", "1",
           "--broker-restarts", "0", "--seed", "5", "--workers", "2", "--partitions", "3",
           "--publish-seconds", "6", "--drain-timeout", "90", "--fail-rate", "0.1",
           "--poison", "5", "--retry", "retry-topic", "--sink", "topic", "--consumer", "bus-eos",
           "--run-id", run_id]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO,
                          env=_env(tmp_path))
    text = proc.stdout
    print(text)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{text}\n{proc.stderr[-3000:]}"
    assert _value(text, "lost") == 0 and _value(text, "duplicated") == 0
    assert _bound(text) == 0
    assert "dead-lettered: 5 (expected 5)" in text
    assert "committed == end offsets: true" in text
    saved = json.loads((tmp_path / run_id / "chaos.json").read_text())
    # the kill happened and the replacement took the victim's slot (its transactional id)
    kills = [a for a in saved["actions"] if a["action"] == "kill"]
    assert len(kills) == 1 and "error" not in kills[0]
    slots = {w["name"]: w["slot"] for w in saved["workers"]}
    assert slots[kills[0]["replacement"]] == kills[0]["slot"]
