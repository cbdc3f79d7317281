"""``offsetlab chaos`` on a real Kafka broker: consumers SIGKILLed, the broker restarted.

Each test starts its own broker (the run restarts it, which the session broker must not
suffer). Nothing here asserts a speed: the numbers that matter are *lost* (must be 0) and
that the printed accounting agrees with ``chaos.json``.
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
    assert produced == 300
    assert processed == produced
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
