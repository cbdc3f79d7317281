"""``python -m offsetlab.lab.clients.pymember``: the child process of a kafka-python or
confluent-kafka member (the protocol of :mod:`offsetlab.lab.clients.protocol`).

Plumbing only: the first stdin line is the :class:`MemberConfig`; a reader thread queues the
later command lines for the poll loop (:class:`~offsetlab.lab.clients.pymember_loop.MemberLoop`,
the only thread that touches the client) and ends the process at once (``os._exit(3)``, no
LeaveGroup, as SIGKILL would) when stdin reaches EOF; a watcher thread does the same when the
parent process changes (the parent also sets ``PR_SET_PDEATHSIG``). Events go to the original
stdout, one JSON line each, flushed; file descriptor 1 is pointed at stderr so that nothing
else (librdkafka, stray prints) can reach the event stream. Logs go to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from typing import IO, Any

from offsetlab.lab.clients.protocol import MemberConfig
from offsetlab.lab.clients.pymember_loop import Adapter, Emit, MemberLoop

__all__ = ["Emitter", "make_adapter", "main", "EOF_EXIT"]

log = logging.getLogger("offsetlab.lab.clients.pymember")

EOF_EXIT = 3   # exit status when stdin reached EOF (the parent is gone)


class Emitter:
    """Writes protocol events (``event``, ``at``, ``client`` and the given keys), thread-safe:
    kafka-python calls the rebalance listener from its IO thread."""

    def __init__(self, out: IO[str], client: str) -> None:
        self.out = out
        self.client = client
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "at": time.time(), "client": self.client, **fields},
                          default=str)
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()


def make_adapter(config: MemberConfig, emit: Emit) -> Adapter:
    if config.client == "kafka-python":
        from offsetlab.lab.clients.pymember_kafka_python import KafkaPythonAdapter
        return KafkaPythonAdapter(config, emit)
    if config.client == "confluent-kafka":
        from offsetlab.lab.clients.pymember_confluent import ConfluentAdapter
        return ConfluentAdapter(config, emit)
    raise ValueError(f"pymember runs kafka-python and confluent-kafka, not {config.client!r}")


def _read_commands(stdin: IO[str], commands: queue.Queue[dict[str, Any]]) -> None:
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            command = json.loads(line)
            if not isinstance(command, dict):
                raise ValueError("not an object")
        except ValueError:
            log.warning("ignoring a command line that is not a JSON object: %r", line[:200])
            continue
        commands.put(command)
    log.info("stdin reached EOF: the parent is gone, exiting without leaving the group")
    os._exit(EOF_EXIT)


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            log.info("parent %d is gone: exiting without leaving the group", parent)
            os._exit(EOF_EXIT)


def main() -> None:
    events = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parent = os.getppid()
    first = sys.stdin.readline()
    if not first.strip():
        os._exit(EOF_EXIT)
    config = MemberConfig.from_json(first)
    emit = Emitter(events, config.client)
    commands: queue.Queue[dict[str, Any]] = queue.Queue()
    threading.Thread(target=_read_commands, args=(sys.stdin, commands), name="stdin",
                     daemon=True).start()
    threading.Thread(target=_watch_parent, args=(parent,), name="parent-watch",
                     daemon=True).start()
    code = 1
    try:
        code = MemberLoop(config, make_adapter(config, emit), emit, commands).run()
    except BaseException as exc:   # a defect of the loop: still say so on the event stream
        log.exception("member loop crashed")
        emit("error", where="loop", error=f"{type(exc).__name__}: {exc}", fatal=True)
        emit("stopped", clean=False)
    finally:
        events.flush()
        logging.shutdown()
        os._exit(code)


if __name__ == "__main__":
    main()
