"""offsetlab.lab.clients.node with fake ``node`` and ``npm`` executables on PATH and the cache
in tmp_path: Node's version check, the one-time locked ``npm ci``, its error, the child's
command line. (The real install is exercised by ``make setup`` and the KafkaJS integration
tests.)"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from offsetlab.lab.clients import node

FAKE_NPM = """#!/bin/sh
echo "npm $*" >> "{calls}"
sleep 0.3
if [ -n "$FAKE_NPM_FAIL" ]; then
  echo "npm ERR! code E404"; echo "npm ERR! 404 Not Found - kafkajs" >&2; exit 1
fi
mkdir -p node_modules/kafkajs && echo '{{"version": "2.2.4"}}' > node_modules/kafkajs/package.json
"""


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "npm-calls.txt"

    def write(name: str, text: str) -> None:
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)

    write("npm", FAKE_NPM.format(calls=calls))
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("OFFSETLAB_CACHE", str(tmp_path / "cache"))

    def with_node(version: str) -> None:
        write("node", f"#!/bin/sh\necho {version}\n")

    def npm_calls() -> int:
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    return with_node, npm_calls


def test_node_available_says_why_not(fakes, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    with_node, _ = fakes
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))   # no node at all
    ok, why = node.node_available()
    assert not ok and "not on PATH" in why
    with_node("v16.20.2")
    ok, why = node.node_available()
    assert not ok and "v16.20.2" in why and "older than 18" in why
    with_node("v20.1.0")
    ok, why = node.node_available()
    assert ok and "v20.1.0" in why


def test_ensure_installs_once_outside_the_repo(fakes, tmp_path) -> None:
    with_node, npm_calls = fakes
    with_node("v20.1.0")
    target = node.ensure_kafkajs()
    assert target.parent == tmp_path / "cache" / "kafkajs" and len(target.name) == 16
    assert (target / "package-lock.json").read_bytes() == (node.KAFKAJS_DIR / "package-lock.json").read_bytes()
    assert npm_calls() == 1
    assert (tmp_path / "npm-calls.txt").read_text().strip() == "npm ci --no-audit --no-fund"
    assert node.ensure_kafkajs() == target and npm_calls() == 1     # the stamp: no second run
    # a stamp whose node_modules went away is not trusted
    (target / "node_modules" / "kafkajs" / "package.json").unlink()
    assert node.ensure_kafkajs() == target and npm_calls() == 2


def _ensure_in_child(env: dict[str, str], out: str) -> None:
    os.environ.update(env)
    Path(out).write_text(str(node.ensure_kafkajs()))


def test_concurrent_callers_run_npm_once(fakes, tmp_path) -> None:
    with_node, npm_calls = fakes
    with_node("v20.1.0")
    env = {k: os.environ[k] for k in ("PATH", "OFFSETLAB_CACHE")}
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_ensure_in_child, args=(env, str(tmp_path / f"out{i}")))
             for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len({(tmp_path / f"out{i}").read_text() for i in range(3)}) == 1
    assert npm_calls() == 1


def test_npm_failure_names_the_command_and_its_output(fakes, monkeypatch) -> None:
    with_node, npm_calls = fakes
    with_node("v20.1.0")
    monkeypatch.setenv("FAKE_NPM_FAIL", "1")
    with pytest.raises(node.KafkaJSUnavailable) as err:
        node.ensure_kafkajs()
    text = str(err.value)
    assert "`" in text and "npm ci --no-audit --no-fund" in text and "exit 1" in text
    assert "404 Not Found - kafkajs" in text and "npm ERR! code E404" in text
    assert not (node.kafkajs_dir() / ".offsetlab-installed").exists()
    monkeypatch.delenv("FAKE_NPM_FAIL")
    assert node.ensure_kafkajs() and npm_calls() == 2      # a later call tries again


def test_ensure_without_node_refuses(fakes, monkeypatch, tmp_path) -> None:
    _, npm_calls = fakes
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))   # npm, but no node
    with pytest.raises(node.KafkaJSUnavailable, match="Node.js"):
        node.ensure_kafkajs()
    assert npm_calls() == 0


def test_child_command_runs_member_js_with_node_path(fakes) -> None:
    with_node, _ = fakes
    with_node("v20.1.0")
    cmd, env = node.child_command()
    assert Path(cmd[0]).name == "node" and cmd[1] == str(node.MEMBER_JS) and node.MEMBER_JS.exists()
    assert env == {"NODE_PATH": str(node.kafkajs_dir() / "node_modules")}
