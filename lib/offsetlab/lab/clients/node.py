"""Node and KafkaJS for the ``kafkajs`` member: is Node there, and KafkaJS installed once.

The member's script (``kafkajs/member.js``) and its ``package.json`` / ``package-lock.json``
live in the repository; KafkaJS itself is installed by ``npm ci`` into a cache outside git,
beside the Kafka jars (:func:`offsetlab.brokers.jars.cache_dir`), in a folder named by the
lock file's hash: ``<cache>/kafkajs/<sha256(package-lock.json)[:16]>/node_modules``. The
install runs once (a stamp file says it finished) and under a file lock, so two processes
that need it at once (pytest-xdist workers) do not both run ``npm ci`` into one folder.
The child runs ``node member.js`` from the repository with ``NODE_PATH`` at that folder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from offsetlab.brokers.jars import cache_dir

__all__ = ["KAFKAJS_DIR", "MEMBER_JS", "MIN_NODE", "KafkaJSUnavailable", "node_available",
           "kafkajs_dir", "ensure_kafkajs", "child_command"]

#: the repository's folder of the KafkaJS member (script, package.json, package-lock.json)
KAFKAJS_DIR = Path(__file__).resolve().parent / "kafkajs"
MEMBER_JS = KAFKAJS_DIR / "member.js"
#: the oldest Node major version the member supports
MIN_NODE = 18
_STAMP = ".offsetlab-installed"


class KafkaJSUnavailable(RuntimeError):
    """Node is missing or too old, or ``npm ci`` failed (the message says which and how)."""


def _node_version(node: str) -> str:
    proc = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    return proc.stdout.strip()


def node_available() -> tuple[bool, str]:
    """``(True, "node vX.Y.Z at PATH")`` when Node >= :data:`MIN_NODE` is on PATH, else
    ``(False, reason)``."""
    node = shutil.which("node")
    if not node:
        return False, f"Node.js (>= {MIN_NODE}) is not on PATH"
    try:
        version = _node_version(node)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"`{node} --version` failed: {exc}"
    m = re.match(r"v(\d+)\.", version)
    if not m:
        return False, f"`{node} --version` printed {version!r}, not a Node version"
    if int(m.group(1)) < MIN_NODE:
        return False, f"Node {version} at {node} is older than {MIN_NODE}"
    return True, f"node {version} at {node}"


def kafkajs_dir() -> Path:
    """The cache folder of the current lock file (whether or not it is installed yet)."""
    digest = hashlib.sha256((KAFKAJS_DIR / "package-lock.json").read_bytes()).hexdigest()[:16]
    return cache_dir() / "kafkajs" / digest


def _installed(target: Path) -> bool:
    return (target / _STAMP).exists() and (target / "node_modules" / "kafkajs" / "package.json").exists()


def ensure_kafkajs() -> Path:
    """Install the locked KafkaJS into :func:`kafkajs_dir` once (``npm ci``); return that
    folder (its ``node_modules`` is what ``NODE_PATH`` points at). Idempotent and safe to
    call from several processes at once."""
    target = kafkajs_dir()
    stamp = target / _STAMP
    if _installed(target):
        return target
    ok, why = node_available()
    if not ok:
        raise KafkaJSUnavailable(f"cannot install KafkaJS: {why}")
    npm = shutil.which("npm")
    if not npm:
        raise KafkaJSUnavailable("cannot install KafkaJS: npm is not on PATH (it comes with Node.js)")
    target.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # released when the file closes
        if _installed(target):                    # another process installed it meanwhile
            return target
        stamp.unlink(missing_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(KAFKAJS_DIR / name, target / name)
        cmd = [npm, "ci", "--no-audit", "--no-fund"]
        env = {**os.environ, "npm_config_update_notifier": "false"}
        try:
            proc = subprocess.run(cmd, cwd=target, capture_output=True, text=True, timeout=600,
                                  env=env)
            code, out = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, out = None, f"timed out after {exc.timeout:.0f} s"
        if code != 0 or not (target / "node_modules" / "kafkajs" / "package.json").exists():
            tail = "\n".join(out.splitlines()[-20:])
            raise KafkaJSUnavailable(
                f"`{' '.join(cmd)}` in {target} failed (exit {code}); check access to the npm "
                f"registry, or run it by hand there.\n{tail}")
        stamp.write_text(_node_version(shutil.which("node") or "node") + "\n")
    return target


def child_command() -> tuple[list[str], dict[str, str]]:
    """The KafkaJS member's command line and extra environment (installs KafkaJS first)."""
    target = ensure_kafkajs()
    return [shutil.which("node") or "node", str(MEMBER_JS)], {"NODE_PATH": str(target / "node_modules")}
