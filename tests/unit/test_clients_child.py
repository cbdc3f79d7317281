"""ChildMember and the JSON-lines protocol against a fake child process (no broker, no Node).

The fake is a small Python script: it reads the config line, answers with events (one line
that is not an event among them), and answers the commands; ``FAKE_MODE`` in its environment
(given through the patched ``child_command``) picks a misbehaviour.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from offsetlab.lab.clients import child
from offsetlab.lab.clients.child import ChildMember, MemberTimeout
from offsetlab.lab.clients.protocol import MemberConfig
from offsetlab.lab.timeline_core import Timeline

FAKE = r'''
import json, os, signal, sys, time
mode = os.environ.get("FAKE_MODE", "normal")
if mode == "ignore_stop":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

def emit(event, **fields):
    sys.stdout.write(json.dumps({"event": event, "at": time.time(), "client": "fake", **fields}) + "\n")
    sys.stdout.flush()

cfg = json.loads(sys.stdin.readline())
with open(os.environ["FAKE_PIDFILE"], "w") as f:
    f.write(str(os.getpid()))
emit("ready", who=cfg["who"])
print("this line is not an event", flush=True)
print(json.dumps({"event": "no_such_event", "at": time.time()}), flush=True)
emit("assigned", partitions=[[cfg["topics"][0], 0], [cfg["topics"][0], 1]])
emit("handled", topic=cfg["topics"][0], partition=1, offset=7, key="k7", value="v7", attempt=1)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["cmd"] in ("pause", "resume"):
        parts = cmd["partitions"] if cmd["partitions"] is not None else [0, 1]
        emit(cmd["cmd"], partitions=[[cfg["topics"][0], p] for p in parts])
    elif cmd["cmd"] == "stop" and mode != "ignore_stop":
        emit("revoked", partitions=[[cfg["topics"][0], 0], [cfg["topics"][0], 1]])
        emit("stopped", clean=True)
        sys.exit(0)
# stdin EOF: the parent is gone
with open(os.environ["FAKE_PIDFILE"] + ".eof", "w") as f:
    f.write("eof")
sys.exit(0)
'''


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    script = tmp_path / "fake_member.py"
    script.write_text(FAKE)
    pidfile = tmp_path / "fake.pid"

    def start(mode: str = "normal", who: str = "a") -> ChildMember:
        env = {"FAKE_MODE": mode, "FAKE_PIDFILE": str(pidfile)}
        monkeypatch.setattr(child, "child_command",
                            lambda config: ([sys.executable, "-u", str(script)], env))
        cfg = MemberConfig(client="kafkajs", who=who, bootstrap="127.0.0.1:1", group="g",
                           topics=["t"])
        return ChildMember(cfg, Timeline(), log_dir=tmp_path).start()

    start.pidfile = pidfile  # type: ignore[attr-defined]
    return start


def _gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_events_become_timeline_rows_with_partition_and_offset(fake) -> None:
    m = fake()
    try:
        ev = m.wait_for("handled", timeout_s=20)
        assert (ev["partition"], ev["offset"], ev["client"]) == (1, 7, "fake")
        rows = [r for r in m.timeline.rows() if r.what == "handled"]
        assert len(rows) == 1
        row = rows[0]
        assert (row.who, row.topic, row.partition, row.offset, row.key) == ("a", "t", 1, 7, "k7")
        assert row.detail["value"] == "v7" and row.detail["client"] == "fake"
        assert m.holds() == {("t", 0), ("t", 1)}
        # the line that is not JSON and the unknown event name were dropped, nothing else
        assert [e["event"] for e in m.events] == ["ready", "assigned", "handled"]
        m.pause([1])
        assert m.wait_for("pause", timeout_s=20)["partitions"] == [["t", 1]]
        m.resume()
        assert m.wait_for("resume", timeout_s=20)["partitions"] == [["t", 0], ["t", 1]]
    finally:
        m.close()


def test_wait_for_times_out_naming_member_event_and_log(fake) -> None:
    m = fake(who="slowpoke")
    try:
        m.wait_for("ready", timeout_s=20)
        t0 = time.monotonic()
        with pytest.raises(MemberTimeout) as err:
            m.wait_for("commit", timeout_s=1.0)
        assert 0.9 <= time.monotonic() - t0 < 10
        text = str(err.value)
        assert "slowpoke" in text and "'commit'" in text and "not within 1 s" in text
        assert "got 0" in text and "slowpoke.stderr.log" in text
        # enough of an event that did come: the count is what times out
        with pytest.raises(MemberTimeout, match="2 'handled' event"):
            m.wait_for("handled", count=2, timeout_s=0.5)
    finally:
        m.close()


def test_wait_for_fails_at_once_when_the_child_exits(fake) -> None:
    m = fake()
    m.wait_for("ready", timeout_s=20)
    m.stop()
    t0 = time.monotonic()
    with pytest.raises(MemberTimeout, match="exited"):
        m.wait_for("commit", timeout_s=30)
    assert time.monotonic() - t0 < 5


def test_stop_leaves_cleanly_and_no_process(fake) -> None:
    m = fake()
    m.wait_for("ready", timeout_s=20)
    pid = m.proc.pid
    assert m.stop(timeout_s=20) == 0
    assert m.seen("stopped")[0]["clean"] is True
    assert m.holds() == set()
    assert not m.alive and _gone(pid)


def test_stop_kills_a_child_that_ignores_it(fake) -> None:
    m = fake(mode="ignore_stop")
    m.wait_for("ready", timeout_s=20)
    pid = m.proc.pid
    t0 = time.monotonic()
    code = m.stop(timeout_s=1.0)
    assert code == -9 and time.monotonic() - t0 < 10
    assert not m.seen("stopped") and _gone(pid)
    assert [r.what for r in m.timeline.rows()][-1] == "killed"


def test_kill_and_close_leave_no_process(fake) -> None:
    m = fake()
    m.wait_for("ready", timeout_s=20)
    pid = m.proc.pid
    m.kill()
    assert m.exit_code == -9 and _gone(pid)
    m.close()  # after a kill: nothing left to do, no error

    with fake() as m2:
        m2.wait_for("ready", timeout_s=20)
        pid2 = m2.proc.pid
    assert m2.exit_code == 0 and _gone(pid2)


def test_stdin_eof_makes_the_child_exit(fake) -> None:
    m = fake()
    try:
        m.wait_for("ready", timeout_s=20)
        pid = m.proc.pid
        m.proc.stdin.close()   # what the parent's death does to the pipe
        assert m.proc.wait(10) == 0
        assert Path(str(fake.pidfile) + ".eof").exists()
        assert _gone(pid)
    finally:
        m.close()
