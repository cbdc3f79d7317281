"""One E04 consumer process, to be SIGKILLed between processing a message and its commit.

    python -m offsetlab.lab.experiments.e04_kill_worker --bootstrap-servers HOST:PORT \\
        --topic T --group G --out FILE --mode offset+1|offset|runner --end N [--kill-after OFFSET] \\
        [--timeout-s S] [--parent-pid PID]

The handler appends ``<offset>\\n`` to ``--out`` and flushes it to the kernel before it
returns (as :mod:`offsetlab.lab.chaos_worker` does): what the file holds was processed,
whatever happens to the process afterwards. Modes:

- ``offset+1`` / ``offset``: a raw kafka-python poll loop committing ``offset + 1`` (or
  ``offset``) after each processed record (E04's per-message commits);
- ``runner``: the adapter's :class:`~offsetlab.bus.runner.ConsumerRunner` with a message
  handler (it commits ``offset + 1`` of what is settled once per poll batch).

With ``--kill-after OFFSET`` the worker, right after recording that offset as processed and
before any commit of it, prints ``processed OFFSET`` and blocks: the orchestrator
(:mod:`offsetlab.lab.experiments.e04_kill`) SIGKILLs it there. Without it (the restarted
consumer) the worker exits 0 once it processed the topic's last offset and committed.

The worker never outlives the orchestrator, three ways over:

- at start it asks the kernel for ``SIGKILL`` when its parent dies (``PR_SET_PDEATHSIG``, Linux
  only; elsewhere the call fails and is ignored). The kernel sends it when the *thread* that
  spawned the worker exits, which is fine here: :func:`~offsetlab.lab.experiments.e04_kill.run_kill`
  kills and reaps its workers before it returns;
- it exits (status :data:`ORPHANED`) when its stdin reaches EOF (the orchestrator holds the
  other end; the kernel closes it when the orchestrator dies) or when its parent process
  changes (:func:`offsetlab.lab.chaos_worker.watch_parent`, the chaos workers' watch);
- with ``--parent-pid PID`` (the orchestrator passes its own) it exits at once if its parent
  is already another process when it starts (the parent died before the watches were set).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

# the chaos workers' watch (stdin EOF or a new parent process): one copy of it
from offsetlab.lab.chaos_worker import ORPHANED, watch_parent

MODES = ("offset+1", "offset", "runner")
PR_SET_PDEATHSIG = 1


def set_pdeathsig(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent (thread) dies
    (``prctl(PR_SET_PDEATHSIG)``). False where that is not available (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _orphaned() -> None:
    try:  # stdout is a pipe to the orchestrator, which is gone: the print may raise
        print("orchestrator gone: exiting", flush=True)
    finally:
        os._exit(ORPHANED)


def guard(parent_pid: int | None = None) -> None:
    """Make sure this process dies with its parent (see the module docstring): the death
    signal, then the check that the parent is still ``parent_pid``, then the watches."""
    set_pdeathsig()
    if parent_pid is not None and os.getppid() != parent_pid:
        _orphaned()  # the parent died before the death signal was set: nobody would send it
    watch_parent(_orphaned, threading.Event())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="e04_kill_worker")
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--kill-after", type=int, default=-1)
    p.add_argument("--end", type=int, required=True, help="the topic's end offset (1 partition)")
    p.add_argument("--timeout-s", type=float, default=60.0)
    p.add_argument("--parent-pid", type=int, default=None,
                   help="the orchestrator's pid: exit at once if the parent is already another")
    a = p.parse_args(argv)
    guard(a.parent_pid)
    out = open(a.out, "a", encoding="ascii", buffering=1)  # noqa: SIM115
    done = threading.Event()

    def process(offset: int) -> None:
        out.write(f"{offset}\n")
        out.flush()
        if offset == a.kill_after:
            print(f"processed {offset}", flush=True)
            threading.Event().wait()  # blocked before the commit; the orchestrator kills here

    settings = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000,
                "auto_offset_reset": "earliest"}
    from offsetlab.bus.transports.kafka_python.compat import unstick_join, warmed_consumer

    if a.mode == "runner":
        from offsetlab.bus.config import CrashPolicy, RunnerConfig
        from offsetlab.bus.runner import ConsumerRunner

        def handler(record: object) -> None:
            process(record.offset)  # type: ignore[attr-defined]
            if record.offset == a.end - 1:  # type: ignore[attr-defined]
                done.set()

        runner = ConsumerRunner(RunnerConfig(bootstrap_servers=a.bootstrap_servers, group_id=a.group,
                                             topics=(a.topic,), name=a.group,
                                             crash_policy=CrashPolicy(restart=False),
                                             consumer_settings=settings),
                                handler=handler, consumer_factory=warmed_consumer((a.topic,)))
        runner.run(timeout=a.timeout_s)
        print("joined", flush=True)
        ok = done.wait(a.timeout_s)
        runner.stop()  # commits what is settled, leaves the group
        return 0 if ok else 1

    from kafka.structs import OffsetAndMetadata, TopicPartition

    delta = 1 if a.mode == "offset+1" else 0
    consumer = warmed_consumer((a.topic,))(bootstrap_servers=a.bootstrap_servers, group_id=a.group,
                                           client_id=a.group, enable_auto_commit=False, **settings)
    consumer.subscribe([a.topic])
    deadline = time.monotonic() + a.timeout_s
    joined = False
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=100)
            unstick_join(consumer)  # kafka-python can abandon a rejoin: see compat.unstick_join
            if consumer.assignment() and not joined:
                joined = True
                print("joined", flush=True)
            for tp, records in batch.items():
                for r in records:
                    process(r.offset)
                    consumer.commit({TopicPartition(tp.topic, tp.partition):
                                     OffsetAndMetadata(r.offset + delta, "", -1)})
                    if r.offset == a.end - 1:
                        return 0
        return 1
    finally:
        consumer.close()


if __name__ == "__main__":
    sys.exit(main())
