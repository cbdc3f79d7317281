"""One chaos consumer process: consume the chaos topic, write down every event it handled.

    python -m offsetlab.lab.chaos_worker --bootstrap-servers HOST:PORT --topic-prefix P \\
        --group G --out FILE [--mode bus|bus-eos|raw|unsafe] \\
        [--client kafka-python|confluent-kafka] [--session-timeout-ms 6000] [--name NAME] \\
        [--slot K --seed S --events N --poison P --fail-rate F \\
         --retry in-place|main-topic|retry-topic --sink file|topic --transactional-id ID]

``offsetlab chaos`` (:mod:`offsetlab.lab.chaos`) starts several of these and SIGKILLs them
at random moments. What makes the accounting honest is *when* a worker writes: the handler
appends ``<seq>\\n`` to ``--out`` and flushes it to the kernel **before it returns**, i.e.
before the consumer can commit the record. A SIGKILL after the write and before the commit
makes the record come back to another worker: a *duplicate*, never a loss. (The kernel keeps
what was flushed when the process is killed; only a machine crash could lose it.)

``--handle-ms`` is simulated work per event, done before the event is recorded: with it a
poll batch takes a while, and a SIGKILL can land between a recorded event and its batch's
commit (the duplicates the run reports).

Modes:

- ``bus`` (default): :class:`offsetlab.bus.KafkaBus` ``subscribe(ChaosEvent, handler,
  retry=...)`` on the client ``--client`` names (kafka-python or confluent-kafka). The
  handler rejects the run's poison events (:func:`~offsetlab.lab.chaos_choice.poison_seqs`:
  the dead-letter topic at once), raises a retriable
  :class:`~offsetlab.lab.chaos_choice.ChaosFailure` on the deliveries its slot's
  :class:`~offsetlab.lab.chaos_choice.FailureDice` pick (``--fail-rate``), and records the
  rest: in its ``.seq`` file, or (``--sink topic``) by publishing
  :class:`~offsetlab.lab.chaos_events.ChaosProcessed` through its bus. Failed and rejected
  deliveries go to the ``.fail`` and ``.rej`` files (:func:`worker_files`), never ``.seq``.
- ``bus-eos``: the same on the bus's transactional mode: ``KafkaBusConfig(transactional_id=
  --transactional-id)`` (the orchestrator gives each worker *slot* a fixed id, so a
  replacement's ``init_transactions`` fences the transaction its killed predecessor left
  open); retry copies, dead letters, the handler's published events and the consumed
  offsets of a poll batch commit in one transaction.
- ``raw``: a plain kafka-python poll loop that handles the whole batch, then commits it
  synchronously (the baseline the bus is compared with).
- ``unsafe``: the raw loop with the commit *before* the batch is handled (at-most-once). It
  exists to show that the run detects loss: a kill mid-batch loses the rest of the batch.
  With ``--hold-first-batch`` the loss does not depend on when the kill lands: after its
  first commit of a non-empty batch the worker prints ``holding N committed unhandled`` and
  handles nothing until the orchestrator writes ``release`` to its stdin. The orchestrator
  kills a worker that is holding, so its N records are committed and never handled.

The worker never outlives the orchestrator: it exits at once when its stdin reaches EOF (the
orchestrator holds the other end of the pipe, and the kernel closes it when the orchestrator
dies, SIGKILL included) or when its parent process changes. SIGTERM stops it cleanly (the
consumer commits what is settled and leaves the group). The log (stdout) says ``joined``
once the group join completed, so the orchestrator knows the worker is consuming.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from offsetlab.bus.events import Event
from offsetlab.bus.transports import CLIENTS

from .chaos_choice import RETRY_NAMES, ChaosFailure, FailureDice, poison_seqs, retry_strategy
from .chaos_events import ChaosEvent, ChaosProcessed, chaos_registry

__all__ = ["ChaosEvent", "chaos_registry", "EventLog", "main", "MODES", "BUS_MODES",
           "CONSUMER_MODES", "SINKS", "ORPHANED", "watch_parent", "worker_files"]

log = logging.getLogger("offsetlab.chaos_worker")

MODES = ("bus", "raw")
#: the consumer modes that run the bus (retries, dead letters, ``--sink topic``)
BUS_MODES = ("bus", "bus-eos")
#: consumer modes: the bus ones, ``raw``, and ``unsafe`` (a deliberately broken consumer)
CONSUMER_MODES = (*BUS_MODES, "raw", "unsafe")
#: where a handler records what it processed: its ``.seq`` file or the output topic
SINKS = ("file", "topic")
#: exit status when the orchestrator went away (stdin EOF or a new parent)
ORPHANED = 3


class EventLog:
    """Appends handled sequence numbers to a file, one per line, flushed per record."""

    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "a", encoding="ascii", buffering=1)  # noqa: SIM115
        self._lock = threading.Lock()
        self.count = 0

    def record(self, seq: int) -> None:
        # one write() of a whole line, then flush(): in the kernel before the handler returns
        with self._lock:
            self._file.write(f"{seq}\n")
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            self._file.close()


#: what the orchestrator writes to a holding worker's stdin to let it handle its batch
RELEASE = b"release\n"
#: the log line of a worker holding a committed batch unhandled (group 1: its size); the
#: orchestrator reads it to pick a victim
HOLDING = re.compile(r" holding (\d+) committed unhandled")


def watch_parent(on_orphan: Callable[[], None], released: threading.Event) -> None:
    """Call ``on_orphan`` when stdin hits EOF or the parent process changes; set ``released``
    when the orchestrator writes :data:`RELEASE` to stdin."""
    parent = os.getppid()

    def stdin_eof() -> None:
        # os.read on the descriptor, not sys.stdin: a daemon thread blocked inside a buffered
        # reader makes the interpreter abort at shutdown (it cannot take the buffer's lock)
        seen = b""
        try:
            while chunk := os.read(0, 4096):
                seen = (seen + chunk)[-64:]
                if RELEASE in seen:
                    released.set()
        except OSError:
            pass
        on_orphan()

    def parent_changed() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        on_orphan()

    threading.Thread(target=stdin_eof, name="chaos-stdin-watch", daemon=True).start()
    threading.Thread(target=parent_changed, name="chaos-parent-watch", daemon=True).start()


def _orphaned() -> None:
    try:  # stdout is a pipe to the orchestrator that is gone: the print may raise BrokenPipeError
        print("orchestrator gone: exiting", flush=True)
    finally:
        os._exit(ORPHANED)


def _say(what: str) -> None:
    print(f"{time.time():.3f} {what}", flush=True)


def _work(handle_ms: float) -> None:
    """The handler's simulated work, done before the event counts as processed."""
    if handle_ms > 0:
        time.sleep(handle_ms / 1000)


def consume_raw(args: argparse.Namespace, events: EventLog, stop: threading.Event,
                released: threading.Event) -> None:
    """The baseline: kafka-python poll loop, handle the batch, commit it synchronously
    (``--mode unsafe``: commit first, then handle; with ``--hold-first-batch``, hold the first
    committed batch until ``released`` is set)."""
    from offsetlab.bus.transports.kafka_python.compat import warmed_consumer

    commit_first = args.mode == "unsafe"
    hold = commit_first and args.hold_first_batch
    registry = chaos_registry(args.topic_prefix)
    topic = registry.topic_for(ChaosEvent)
    # warmed: the topic's partitions known before the first join (else the group leader can
    # assign nothing, "No partition metadata for topic", and the worker never joins: a CI
    # run waited 120 s); metadata_max_age_ms as the bus's default: a late topic shows in 5 s
    consumer = warmed_consumer(snapshot=True)(
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group,
        client_id=args.name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=max(100, args.session_timeout_ms // 6),
        metadata_max_age_ms=5000,
    )
    consumer.subscribe([topic])
    joined = False
    try:
        while not stop.is_set():
            batches = consumer.poll(timeout_ms=200)
            if not joined and consumer.assignment():
                joined = True
                _say(f"joined {sorted(tp.partition for tp in consumer.assignment())}")
            if not batches:
                continue
            if commit_first and _commit(consumer) and hold:
                hold = False
                n = sum(len(records) for records in batches.values())
                _say(f"holding {n} committed unhandled")  # matches HOLDING
                while not released.is_set() and not stop.wait(0.05):
                    pass
                _say("released")
            for records in batches.values():
                for record in records:
                    event = registry.decode(record.value)
                    assert isinstance(event, ChaosEvent)
                    _work(args.handle_ms)
                    events.record(event.seq)
            if not commit_first:
                _commit(consumer)
    finally:
        consumer.close(autocommit=False)


def _commit(consumer: Any) -> bool:
    """Commit synchronously; False (and a log line) when the commit failed."""
    import kafka.errors as kafka_errors

    try:
        consumer.commit(timeout_ms=15_000)
    except kafka_errors.KafkaError as exc:  # the group moved on / broker away: redelivered
        _say(f"commit failed ({type(exc).__name__}: {exc}); records will be redelivered")
        return False
    return True


def _log_lifecycle(event: Any) -> None:
    """One log line per lifecycle event of the bus's runner (joins, rebalances, pauses,
    resumes, commits, crashes)."""
    fields = {k: v for k, v in vars(event).items() if k not in ("kind", "at", "runner")}
    for key in ("partitions", "assignment"):
        if key in fields:
            fields[key] = [f"{tp.topic.rsplit('.', 1)[-1]}[{tp.partition}]" for tp in fields[key]]
    if "offsets" in fields:
        fields["offsets"] = {f"{tp.topic.rsplit('.', 1)[-1]}[{tp.partition}]": o
                             for tp, o in fields["offsets"].items()}
    _say(f"lifecycle {event.kind} {fields}")


def worker_files(out: str | Path) -> dict[str, Path]:
    """A worker's files beside its ``--out`` (``worker-1.seq``): ``seq`` processed (file
    sink), ``done`` handler calls that published their output event (topic sink; the
    output may still be aborted), ``fail`` deliveries that raised the seeded retriable
    error, ``rej`` poison deliveries rejected. One seq per line, flushed per line."""
    base = Path(out)
    return {kind: base.with_suffix(f".{kind}") for kind in ("seq", "done", "fail", "rej")}


def consume_bus(args: argparse.Namespace, events: EventLog, stop: threading.Event) -> None:
    """The bus: ``KafkaBus.subscribe(ChaosEvent, handler, retry=...)``. The handler rejects a
    poison event (dead-letter topic at once), raises :class:`ChaosFailure` when the slot's
    dice say so (a retry), else works and records the event: its ``.seq`` file
    (``--sink file``) or ``bus.publish(ChaosProcessed(seq))`` (``--sink topic``; in the
    ``bus-eos`` mode inside the batch's transaction)."""
    from offsetlab.bus import KafkaBus, KafkaBusConfig
    from offsetlab.bus.outcomes import Reject

    registry = chaos_registry(args.topic_prefix)
    extra: dict[str, Any] = {}
    if args.mode == "bus-eos":  # every subscription of this bus is transactional
        extra["transactional_id"] = args.transactional_id
    config = KafkaBusConfig(
        bootstrap_servers=args.bootstrap_servers,
        client=args.client,
        consumer_settings={
            "session_timeout_ms": args.session_timeout_ms,
            "heartbeat_interval_ms": max(100, args.session_timeout_ms // 6),
        },
        name=args.name,
        **extra,
    )
    poison = poison_seqs(args.seed, args.events, args.poison)
    dice = FailureDice(args.seed, args.slot, args.fail_rate)
    files = worker_files(args.out)
    failed, rejected = EventLog(str(files["fail"])), EventLog(str(files["rej"]))
    done = EventLog(str(files["done"])) if args.sink == "topic" else None
    strategy = retry_strategy(args.retry, args.fail_rate, args.events)
    _say(f"retry {strategy!r}; poison {len(poison)}; fail rate {args.fail_rate}; slot {args.slot}"
         + (f"; transactional id {args.transactional_id}" if extra else ""))
    bus = KafkaBus(registry, config)
    try:
        def handler(event: Event) -> Reject | None:
            assert isinstance(event, ChaosEvent)
            seq = event.seq
            if seq in poison:
                rejected.record(seq)
                return Reject(reason=f"poison event {seq}")
            if dice.fails():
                failed.record(seq)
                raise ChaosFailure(f"seeded failure of seq {seq} (slot {args.slot})")
            _work(args.handle_ms)
            if done is None:
                events.record(seq)
                return None
            try:
                bus.publish(ChaosProcessed(seq=seq))
            except Exception:  # a retry like any other failure; counted as failed
                failed.record(seq)
                raise
            done.record(seq)
            return None

        sub = bus.subscribe(ChaosEvent, handler, group=args.group, name=args.name,
                            retry=strategy)
        sub.start()
        if sub.runner is not None:  # the runner's lifecycle in the log, for the post-mortem
            sub.runner.add_listener(_log_lifecycle)
        sub.run(timeout=120)
        _say("joined")
        while not stop.wait(0.2):
            pass
        sub.stop(timeout=30)
    finally:
        bus.close()
        for log_ in (failed, rejected, done):
            if log_ is not None:
                log_.close()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m offsetlab.lab.chaos_worker",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic-prefix", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--out", required=True, help="file the handled sequence numbers are appended to")
    p.add_argument("--mode", choices=CONSUMER_MODES, default="bus")
    p.add_argument("--client", choices=CLIENTS, default="kafka-python",
                   help="the bus's client library (mode 'bus' only)")
    p.add_argument("--session-timeout-ms", type=int, default=6000)
    p.add_argument("--handle-ms", type=float, default=0.0,
                   help="simulated work per event before it is recorded (ms)")
    p.add_argument("--hold-first-batch", action="store_true",
                   help="unsafe mode: hold the first committed batch until 'release' on stdin")
    p.add_argument("--name", default=f"chaos-worker-{os.getpid()}")
    p.add_argument("--slot", type=int, default=0,
                   help="the worker's slot (a replacement takes its victim's): seeds its dice")
    p.add_argument("--seed", type=int, default=0, help="the run's seed")
    p.add_argument("--events", type=int, default=0, help="the run's event count (poison choice)")
    p.add_argument("--poison", type=int, default=0, help="poison events among them")
    p.add_argument("--fail-rate", type=float, default=0.0,
                   help="fraction of deliveries that raise a retriable error")
    p.add_argument("--retry", choices=RETRY_NAMES, default="main-topic")
    p.add_argument("--sink", choices=SINKS, default="file")
    p.add_argument("--transactional-id", default=None, help="mode bus-eos: the slot's id")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    released = threading.Event()
    watch_parent(_orphaned, released)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    events = EventLog(args.out)
    _say(f"started pid={os.getpid()} mode={args.mode} client={args.client} group={args.group}")
    try:
        if args.mode in BUS_MODES:
            consume_bus(args, events, stop)
        else:
            consume_raw(args, events, stop, released)
    finally:
        events.close()
        _say(f"stopped after {events.count} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
