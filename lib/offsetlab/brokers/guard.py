"""Process guard: runs one broker command and makes sure it dies with its parent.

Started by :mod:`offsetlab.brokers.process` as ``python guard.py LOGFILE -- CMD ...`` with
its standard input a pipe held by the parent. The guard

* starts CMD as its own child with ``PR_SET_PDEATHSIG=SIGKILL`` (so CMD dies if the guard
  is SIGKILLed),
* stops CMD (SIGTERM, then SIGKILL after a grace period) when its stdin reaches EOF, which
  happens when the parent exits for any reason, SIGKILL included,
* forwards SIGTERM/SIGINT to CMD the same way, and exits with CMD's status.

It imports only the standard library and is run by path, so it starts in ~50 ms.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading

GRACE_S = float(os.environ.get("OFFSETLAB_GUARD_GRACE_S", "15"))


def _pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgid(0, 0)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: guard.py LOGFILE -- CMD ...", file=sys.stderr)
        return 2
    log_path, cmd = argv[0], argv[2:]
    with open(log_path, "ab", buffering=0) as log:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 preexec_fn=_pdeathsig)
    stopping = threading.Event()

    def stop(*_: object) -> None:
        if stopping.is_set():
            return
        stopping.set()

        def reap() -> None:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            try:
                child.wait(GRACE_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        threading.Thread(target=reap, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def watch_parent() -> None:
        try:
            while sys.stdin.buffer.read(1):
                pass
        except OSError:
            pass
        stop()

    threading.Thread(target=watch_parent, daemon=True).start()
    while True:
        try:
            return child.wait()
        except InterruptedError:  # pragma: no cover
            continue


if __name__ == "__main__":
    # os._exit: a daemon thread blocked reading stdin would make a normal interpreter
    # shutdown abort (SIGABRT) while it tries to take the stdin buffer's lock.
    code = main(sys.argv[1:])
    os._exit(code if code >= 0 else 128 - code)
