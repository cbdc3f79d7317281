"""E05's copy-then-commit window, the consumer side: one worker process.

    python -m offsetlab.lab.experiments.e05_window_worker --mode raw|bus \\
        --bootstrap-servers HOST:PORT --topic T --group G --calls FILE [--fail-seq 2]

The worker consumes ``--topic`` (``raw``: a kafka-python loop that assigns itself the
partition, re-produces a failed record to the same topic with the seed's ``retry-count``
header, waits for its acknowledgement and then commits ``offset + 1``; ``bus``: ``KafkaBus``
with ``MainTopicRetry``, which also waits for the copy's acknowledgement before it commits,
once per batch). Its dependency refuses the *original* delivery of message ``--fail-seq``
(attempt 1) and accepts every copy.

With the environment variable :data:`KILL_ENV` set to ``1`` the worker SIGKILLs itself right
after the first copy's acknowledgement and before the commit: ``raw`` between
``send(...).get()`` and ``commit()``; ``bus`` in its activity listener on ``reproduced`` (the
bus reports it once the copy is acknowledged, before it commits the batch). Nothing runs
after the signal: no commit, no close, no leave-group.

Every handler call is appended to ``--calls`` as ``<pid> <seq> <attempt> <processed|failed>``
and flushed before the handler returns (the kernel keeps it through a SIGKILL). The worker
never outlives its parent: it exits when its stdin reaches EOF (the parent holds the pipe) or
its parent changes; SIGTERM stops it cleanly (the bus commits what is settled).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, ClassVar

from offsetlab.bus.events import Event, EventRegistry
from offsetlab.lab.chaos_worker import ORPHANED, watch_parent

__all__ = ["KILL_ENV", "WindowMessage", "window_registry", "main"]

#: set to "1": SIGKILL this worker after the first copy's acknowledgement, before the commit
KILL_ENV = "OFFSETLAB_E05_KILL_AFTER_COPY"
#: the seed's retry counter header of the raw loop (as in E05's fail03)
RETRY_COUNT = "retry-count"


@dataclass(frozen=True, kw_only=True)
class WindowMessage(Event):
    """The bus worker's message: ``seq`` 0..n-1, one key (one partition)."""

    topic: ClassVar[str] = "window"
    seq: int

    @property
    def key(self) -> str:
        return "k"


def window_registry(topic_prefix: str) -> EventRegistry:
    return EventRegistry([WindowMessage], topic_prefix=topic_prefix)


class _DependencyDown(ConnectionError):
    """The dependency refused the original delivery of the failing message."""


class _Calls:
    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "a", encoding="ascii", buffering=1)  # noqa: SIM115
        self._lock = threading.Lock()

    def record(self, seq: int, attempt: int, outcome: str) -> None:
        with self._lock:
            self._file.write(f"{os.getpid()} {seq} {attempt} {outcome}\n")
            self._file.flush()


def _kill_now() -> None:
    print(f"{time.time():.3f} copy acknowledged: SIGKILL before the commit", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def _watch_parent() -> None:
    """Exit (status 3) when stdin hits EOF or the parent changes: the chaos workers' watch."""
    watch_parent(lambda: os._exit(ORPHANED), threading.Event())


def _handle(calls: _Calls, fail_seq: int, seq: int, attempt: int) -> None:
    if seq == fail_seq and attempt == 1:
        calls.record(seq, attempt, "failed")
        raise _DependencyDown(f"dependency refused message {seq} (attempt {attempt})")
    calls.record(seq, attempt, "processed")


def run_raw(args: argparse.Namespace, calls: _Calls, kill: bool, stop: threading.Event) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    servers = args.bootstrap_servers.split(",")
    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=args.group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    producer = KafkaProducer(bootstrap_servers=servers, linger_ms=0)
    tp = TopicPartition(args.topic, 0)
    consumer.assign([tp])
    print("consuming", flush=True)
    try:
        while not stop.is_set():
            for record in consumer.poll(timeout_ms=100).get(tp, []):
                raw = dict(record.headers or []).get(RETRY_COUNT)
                retries = int(raw) if raw else 0
                try:
                    _handle(calls, args.fail_seq, int(record.value), retries + 1)
                except _DependencyDown:
                    producer.send(args.topic, key=record.key, value=record.value,
                                  headers=[(RETRY_COUNT, str(retries + 1).encode())]).get(timeout=30)
                    if kill:
                        _kill_now()
                consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
    finally:
        producer.close()
        consumer.close(autocommit=False)


def run_bus(args: argparse.Namespace, calls: _Calls, kill: bool, stop: threading.Event) -> None:
    from offsetlab.bus import ActivityKind, KafkaBus, KafkaBusConfig, MainTopicRetry
    from offsetlab.lab.experiments.outage_bus import BUS_CONSUMER_SETTINGS, warmed_factory

    registry = window_registry(args.topic_prefix)
    attempt: dict[str, int] = {}  # the attempt of the delivery being handled (DELIVERED first)

    def on_activity(activity: Any) -> None:
        if activity.kind is ActivityKind.DELIVERED and activity.attempt is not None:
            attempt["now"] = activity.attempt
        elif activity.kind is ActivityKind.REPRODUCED and kill:
            _kill_now()  # reported once the copy is acknowledged, before the batch's commit

    def handler(event: Event) -> None:
        assert isinstance(event, WindowMessage)
        _handle(calls, args.fail_seq, event.seq, attempt.get("now", 1))

    config = KafkaBusConfig(bootstrap_servers=args.bootstrap_servers, name=args.group,
                            consumer_settings=BUS_CONSUMER_SETTINGS,
                            consumer_factory=warmed_factory())
    bus = KafkaBus(registry, config)
    try:
        bus.add_listener(on_activity)
        sub = bus.subscribe(WindowMessage, handler, group=args.group,
                            retry=MainTopicRetry(max_retries=5))
        sub.run(timeout=60)
        print("joined", flush=True)
        while not stop.wait(0.1):
            pass
    finally:
        bus.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m offsetlab.lab.experiments.e05_window_worker")
    p.add_argument("--mode", choices=("raw", "bus"), required=True)
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", default="", help="raw: the topic")
    p.add_argument("--topic-prefix", default="", help="bus: the registry's topic prefix")
    p.add_argument("--group", required=True)
    p.add_argument("--calls", required=True, help="file the handler's calls are appended to")
    p.add_argument("--fail-seq", type=int, default=2)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _watch_parent()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    kill = os.environ.get(KILL_ENV) == "1"
    calls = _Calls(args.calls)
    print(f"started pid={os.getpid()} mode={args.mode} kill={kill}", flush=True)
    (run_raw if args.mode == "raw" else run_bus)(args, calls, kill, stop)
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
