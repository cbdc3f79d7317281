"""Publish N events through the bus while consumers and brokers die and handlers fail;
count what was lost, duplicated and dead-lettered.

    offsetlab chaos --events N --kills K --broker-restarts R [--seed S] [--workers W]
                    [--nodes 1|3] [--broker-kills BK] [--fail-rate F] [--poison P]
                    [--retry in-place|main-topic|retry-topic] [--sink file|topic]
                    [--consumer bus|bus-eos|raw|unsafe] [--publisher bus|raw]
                    [--client kafka-python|confluent-kafka] [--allow-unacked]
                    [--partitions P] [--publish-seconds T] [--handle-ms MS] [--run-id ID]

One run: a ``kafka`` broker (``--nodes 1``, restartable in place) or a three-node KRaft
cluster (``--nodes 3``: replication factor 3, ``min.insync.replicas=2``), the run's topics
(main, retry, dead-letter, output) with P partitions, W consumer worker processes
(:mod:`offsetlab.lab.chaos_worker`) in one consumer group, a publisher thread that spreads
N events over about T seconds, and the fault threads (:mod:`offsetlab.lab.chaos_faults`):
K consumer SIGKILLs of random workers (a replacement starts at once in the victim's slot),
R graceful broker restarts and, on a cluster, BK SIGKILLs of the node leading the most of
the run's partitions, restarted once its leaderships moved, one broker fault at a time and
only on a fully replicated cluster.

The handlers (bus modes) reject the P poison events (seeded; the dead-letter topic at once)
and raise a retriable error on a seeded fraction F of deliveries, retried by the ``--retry``
strategy (:mod:`offsetlab.lab.chaos_choice`: ``max_retries`` so that no event is expected to
exhaust them, 50 ms backoff doubling to 0.5 s). A handler that succeeds records the event:
``--sink file`` appends its seq to the worker's ``.seq`` file and flushes it before it
returns (before the record can be committed: a SIGKILL between is a duplicate, never a
loss); ``--sink topic`` publishes ``ChaosProcessed(seq)`` through the worker's bus, and the
run counts what a read_committed reader finds on ``<prefix>chaos.processed``.
``--consumer bus-eos`` runs the bus's transactional mode (one transactional id per worker
slot): with ``--sink topic`` every effect counted is inside Kafka, so ``duplicated`` must be 0.

After publishing, the run waits until every acknowledged non-poison event was processed and
every poison event dead-lettered (or ``--drain-timeout``), then until no handler was called
for :data:`QUIET_S` (retries of redelivered records finish), stops the workers (SIGTERM:
they commit and leave), reads the topics back and prints (:mod:`offsetlab.lab.chaos_report`;
the rules: :mod:`offsetlab.lab.chaos_accounting`)::

    produced: 10000          distinct events on the main topic (read back)
    acknowledged: 10000      events whose publish call returned
    unacknowledged: 0        events the publisher gave up on
    processed: 9980          acknowledged non-poison events processed at least once
    lost: 0                  acknowledged non-poison events never processed
    duplicated: 212 (...)    extra deliveries per input record; the bound it was checked against
    dead-lettered: 20 (expected 20)
    committed == end offsets: true

An event counts as acknowledged only when a publish call containing it returned; a failed
call is retried with a new client (kafka-python 3.0.12's idempotent producer can stop
completing sends after a broker restart), so an event can be written twice: those are
counted from the topic and reported apart. ``--consumer unsafe`` (commit before handling) is
the negative control: its runs report lost events by construction, not by timing luck
(each unsafe worker holds its first committed batch unhandled; a kill picks a holder).

Exit status: 0 when lost is 0, unacknowledged is 0 (or ``--allow-unacked``), duplicated is
within its bound, the dead letters are exactly the poison events with the right provenance,
no poison event was processed, and the committed offsets are at the end of what the group
consumed; 1 otherwise (or the run could not be set up), 2 usage error, 130 interrupted.
Results: ``data/runs/<run-id>/chaos.json`` and the workers' files and logs in
``data/runs/<run-id>/chaos/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import threading
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from offsetlab.bus.deadline import Deadline
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.retry import RetryTopicRetry, dead_letter_topic
from offsetlab.bus.transports import CLIENTS

from .chaos_choice import RETRY_NAMES, poison_seqs, retry_strategy
from .chaos_config import ChaosConfig, ChaosResult
from .chaos_drain import Progress
from .chaos_events import ChaosEvent, ChaosProcessed, chaos_registry
from .chaos_faults import Faults, schedule
from .chaos_forensics import forensics
from .chaos_publish import BusPublishClient, PublishClient, Publisher, RawPublishClient
from .chaos_readback import create_topics, left_after_commit, read_inputs
from .chaos_report import account, report
from .chaos_worker import BUS_MODES, CONSUMER_MODES, MODES, SINKS
from .chaos_workers import WorkerPool, lines_in
from .paths import runs_dir

__all__ = ["ChaosConfig", "ChaosResult", "run_chaos", "add_arguments", "main", "QUIET_S"]

log = logging.getLogger(__name__)

BROKER_SETTINGS = {"group.initial.rebalance.delay.ms": 0}
#: after the drain: stop the workers once no handler was called for this long (longer than
#: the retries' largest backoff, 0.5 s, and a poll), so redelivered records finish
QUIET_S = 3.0


def _make_run_id(root: Path) -> str:
    from .suite import make_run_id

    return make_run_id("chaos", root)


def _worker_args(config: ChaosConfig, seed: int) -> list[str]:
    faults = config.handler_faults
    return ["--seed", str(seed), "--events", str(config.events),
            "--poison", str(config.poison if faults else 0),
            "--fail-rate", str(config.fail_rate if faults else 0.0), "--retry", config.retry, "--sink", config.sink]


def run_chaos(config: ChaosConfig, *, broker: Any = None, out: IO[str] | None = None) -> ChaosResult:
    """Run one chaos experiment; print progress and the result lines to ``out``.

    ``broker``: a running ``kafka`` :class:`~offsetlab.brokers.BrokerHandle` (or cluster
    handle) to use (tests pass one); default: start one (``config.nodes`` nodes) for the run
    and stop it at the end."""
    out = out or sys.stdout
    root = config.runs_dir or runs_dir()
    run_id = config.run_id or _make_run_id(root)
    run_dir = root / run_id
    folder = run_dir / "chaos"
    folder.mkdir(parents=True, exist_ok=True)
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)
    bus_mode = config.consumer in BUS_MODES
    poison = poison_seqs(seed, config.events, config.poison if bus_mode else 0)
    strategy = retry_strategy(config.retry, config.fail_rate, config.events) if bus_mode else None
    result = ChaosResult(run_id=run_id, run_dir=run_dir, seed=seed,
                         config={k: (str(v) if isinstance(v, Path) else v)
                                 for k, v in asdict(config).items()},
                         retry_strategy=repr(strategy) if strategy else "none (not a bus consumer)")

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    t0 = time.monotonic()

    def rel() -> float:
        return round(time.monotonic() - t0, 3)

    say(f"chaos run {run_id}: events {config.events}, workers {config.workers}, partitions "
        f"{config.partitions}, publishing window {config.window_s:.0f} s, nodes {config.nodes}, "
        f"kills {config.kills}, broker kills {config.broker_kills}, broker restarts {config.broker_restarts}, fail rate "
        f"{config.fail_rate:g}, poison {config.poison}, seed {seed} (consumer {config.consumer}, "
        f"sink {config.sink}, publisher {config.publisher}, client {config.client})")
    if strategy is not None:
        say(f"retry: {config.retry}: {strategy!r}")
    elif config.fail_rate or config.poison:
        say(f"the {config.consumer} consumer has no retries or dead letters: --fail-rate, --poison "
            "and --retry are ignored (no handler fails, no event is poison)")
    abort = threading.Event()
    threads: list[threading.Thread] = []
    pool: WorkerPool | None = None

    def end_threads() -> None:
        abort.set()
        for t in threads:
            if t.is_alive():
                t.join(timeout=60)

    try:
        with ExitStack() as stack:  # on every exit: threads, workers, publisher, then broker
            if broker is None:
                from offsetlab.brokers import start_broker

                broker = stack.enter_context(start_broker("kafka", settings=BROKER_SETTINGS,
                                                          nodes=config.nodes))
                result.timings["broker_start_s"] = round(broker.cold_start_s, 3)
            if config.broker_restarts and not broker.can("restartable"):
                raise ConfigError(f"--broker-restarts needs a restartable broker (kind 'kafka'), "
                                  f"got kind {broker.kind!r}")
            if config.broker_kills and not hasattr(broker, "kill_node"):
                raise ConfigError("--broker-kills needs a cluster handle (--nodes 3)")
            servers = broker.bootstrap_servers
            prefix = f"{run_id}."
            registry = chaos_registry(prefix)
            topic = registry.topic_for(ChaosEvent)
            consumed = [topic]
            if isinstance(strategy, RetryTopicRetry):
                consumed.append(strategy.retry_topic(topic))
            dlt = dead_letter_topic(topic)
            processed_topic = registry.topic_for(ChaosProcessed)
            topics = [*consumed, dlt] + ([processed_topic] if config.sink == "topic" else [])
            create_topics(servers, topics, config.partitions)
            group = f"{run_id}-group"
            pool = WorkerPool(folder=folder, bootstrap_servers=servers, topic_prefix=prefix,
                              group=group, mode=config.consumer,
                              session_timeout_ms=config.session_timeout_ms,
                              handle_ms=config.handle_ms, client=config.client,
                              extra_args=_worker_args(config, seed),
                              transactional_prefix=run_id if config.consumer == "bus-eos" else None)
            stack.callback(pool.stop_all, 10.0)
            # the negative control holds a committed batch in every worker until a kill picks
            # one: the victim dies with records committed and unhandled, whatever the timing
            hold = config.consumer == "unsafe" and config.kills > 0
            first = [pool.spawn(hold=hold) for _ in range(config.workers)]
            pool.wait_joined(first, timeout_s=120)
            result.timings["workers_joined_s"] = rel()
            say(f"+{rel():.1f}s topics {', '.join(topics)} ({config.partitions} partitions), "
                f"{config.workers} workers joined group {group}")
            progress = Progress(pool=pool, servers=servers, sink=config.sink,
                                processed_topic=processed_topic,
                                dead_letter_topic=dlt if bus_mode else None)
            stack.callback(progress.close)

            def make_client(generation: int) -> PublishClient:
                if config.publisher == "bus":
                    return BusPublishClient(servers, prefix, generation, client=config.client)
                return RawPublishClient(servers, topic)

            publisher = Publisher(make_client, n=config.events, batch=config.publish_batch,
                                  duration_s=config.window_s, abort=abort)
            stack.callback(end_threads)
            start = time.monotonic()
            publisher.give_up_at = start + config.window_s + config.drain_timeout_s
            faults = Faults(pool=pool, broker=broker, rng=rng, start=start, abort=abort,
                            actions=result.actions, say=say, rel=rel, hold=hold, topics=topics)
            kill_at = schedule(rng, config.kills, config.window_s)
            restart_at = schedule(rng, config.broker_restarts, config.window_s)
            broker_kill_at = schedule(rng, config.broker_kills, config.window_s)
            threads.extend([
                publisher,
                threading.Thread(target=faults.kill_consumers, args=(kill_at,),
                                 name="chaos-killer", daemon=True),
                threading.Thread(target=faults.broker_faults, args=(broker_kill_at, restart_at),
                                 name="chaos-broker-faults", daemon=True)])
            for t in threads:
                t.start()
            publisher.join()
            if publisher.error is not None:
                raise RuntimeError(f"the publisher failed: {publisher.error!r}") from publisher.error
            result.timings["publish_s"] = round(publisher.ended_at - publisher.started_at, 3)
            say(f"+{rel():.1f}s published: {len(publisher.acked)} acknowledged, "
                f"{publisher.failures} failed publish calls, {publisher.rebuilds} new clients")
            for line in publisher.failure_log[:10]:
                say(f"  publish failure {line}")
            result.publish_failure_log = publisher.failure_log
            result.publisher_rebuilds = publisher.rebuilds
            for t in threads:
                t.join()
            published_at = publisher.ended_at - t0
            for a in result.actions:  # did the fault fall while the publisher published?
                a["while_publishing"] = "error" not in a and a["at_s"] <= published_at
            _drain(config, result, pool, progress, publisher.acked, poison, say, rel)
            stop_began = time.monotonic()
            pool.stop_all()
            result.timings["stop_workers_s"] = round(time.monotonic() - stop_began, 3)
            counts = progress.update(force=True)
            inputs, inputs_at = read_inputs(servers, topic)
            committed, after = left_after_commit(servers, group, consumed)
            account(result, config, acked=publisher.acked, counts=counts, inputs=inputs,
                    inputs_at=inputs_at, poison=poison, dead_letters=progress.letters,
                    main_topic=topic, committed=committed, after=after, calls=progress.calls())
            result.publish_failures = publisher.failures
            if config.sink == "topic" and (result.lost or result.duplicated):
                forensics(result, servers, processed_topic, counts, inputs, pool, say)
    except KeyboardInterrupt:
        result.interrupted = True
        say("interrupted")
    finally:
        if pool is not None:
            result.workers = [{"name": w.name, "slot": w.slot, "pid": w.proc.pid,
                               "returncode": w.proc.returncode,
                               "events": lines_in(w.out) + lines_in(w.file("done"))}
                              for w in pool.workers]
    result.timings["total_s"] = rel()
    if result.interrupted:
        say("no accounting: the run was interrupted before the drain ended")
    else:
        report(result, config, say)
    (run_dir / "chaos.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    say(f"saved: {run_dir / 'chaos.json'}")
    return result


def _drain(config: ChaosConfig, result: ChaosResult, pool: WorkerPool, progress: Progress,
           acked: set[int], poison: frozenset[int], say: Any, rel: Any) -> None:
    """Wait until every acknowledged non-poison event was processed and every acknowledged
    poison event dead-lettered (or the drain timeout), then until no handler was called for
    :data:`QUIET_S` (within the same timeout)."""
    drain_start = time.monotonic()
    deadline = Deadline(config.drain_timeout_s)
    wanted, bad = acked - poison, acked & poison
    quiet_since: float | None = None
    mark: tuple[int, ...] = ()
    while True:
        counts = progress.update()
        missing = len(wanted - counts.keys()) + len(bad - progress.dead_lettered())
        if not missing:
            if not result.drained:
                result.drained = True
                result.timings["drained_s"] = rel()
            now_mark = progress.activity()
            if now_mark != mark:
                mark, quiet_since = now_mark, time.monotonic()
            elif quiet_since is not None and time.monotonic() - quiet_since >= QUIET_S:
                break
        if deadline.expired():
            if missing:
                say(f"+{rel():.1f}s drain timed out after {config.drain_timeout_s:.0f} s: "
                    f"{len(wanted - counts.keys())} acknowledged events never processed, "
                    f"{len(bad - progress.dead_lettered())} poison events not dead-lettered")
            else:
                say(f"+{rel():.1f}s handlers still busy {config.drain_timeout_s:.0f} s after "
                    "publishing; stopping the workers")
            break
        for w in pool.workers:
            if w.proc.poll() is not None and w.ended is None:
                say(f"+{rel():.1f}s {w.name} exited on its own ({w.proc.returncode}); see {w.log}")
                w.ended = time.monotonic()
        time.sleep(0.2)
    result.timings["drain_s"] = round(time.monotonic() - drain_start, 3)


# -- CLI --------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``offsetlab chaos`` options."""
    d = ChaosConfig()
    a = parser.add_argument
    a("--events", type=int, default=d.events, help=f"events to publish ({d.events})")
    a("--kills", type=int, default=d.kills, help=f"consumer SIGKILLs ({d.kills})")
    a("--broker-restarts", type=int, default=d.broker_restarts,
      help=f"graceful broker restarts ({d.broker_restarts}); on a cluster: a graceful stop and "
           "start of the node leading the most partitions")
    a("--nodes", type=int, default=d.nodes, help="brokers: 1 (default) or 3 (a KRaft cluster, "
      "replication factor 3, min.insync.replicas 2)")
    a("--broker-kills", type=int, default=d.broker_kills,
      help="SIGKILLs of the node leading the most partitions, restarted once its leaders "
           "moved (a cluster only)")
    a("--fail-rate", type=float, default=d.fail_rate,
      help="fraction of deliveries whose handler raises a retriable error (seeded; bus modes)")
    a("--poison", type=int, default=d.poison,
      help="events whose handler always rejects: each must be dead-lettered once (bus modes)")
    a("--retry", choices=RETRY_NAMES, default=d.retry, help=f"the bus's retry strategy ({d.retry})")
    a("--sink", choices=SINKS, default=d.sink,
      help="file: the workers' .seq files (default); topic: ChaosProcessed events published "
           "by the handler, read back read_committed (bus modes)")
    a("--allow-unacked", action="store_true",
      help="events the publisher gave up on do not fail the run")
    a("--seed", type=int, default=None, help="schedule seed (default: random, printed)")
    a("--workers", type=int, default=d.workers, help=f"consumer processes ({d.workers})")
    a("--partitions", type=int, default=d.partitions, help=f"topic partitions ({d.partitions})")
    a("--publish-seconds", type=float, default=None,
      help=f"spread publishing over about this long ({d.window_s:.0f}; on a cluster at least "
           "20 s per broker fault)")
    a("--publish-batch", type=int, default=d.publish_batch,
      help=f"events per publish call ({d.publish_batch})")
    a("--session-timeout-ms", type=int, default=d.session_timeout_ms,
      help=f"workers' consumer session timeout ({d.session_timeout_ms})")
    a("--handle-ms", type=float, default=d.handle_ms,
      help=f"simulated work per event in the handlers, ms ({d.handle_ms:g})")
    a("--drain-timeout", type=float, default=d.drain_timeout_s,
      help=f"seconds to wait for every acknowledged event ({d.drain_timeout_s:.0f})")
    a("--consumer", choices=CONSUMER_MODES, default=d.consumer,
      help="bus (default), bus-eos (the bus's transactional mode), raw, or unsafe (commits "
           "before handling: loses events, to show that the run detects it)")
    a("--publisher", choices=MODES, default=d.publisher)
    a("--client", choices=CLIENTS, default=d.client,
      help=f"the bus's client library, publisher and consumers ({d.client})")
    a("--run-id", default=None, help="default: <UTC time>-chaos")


def config_of(args: argparse.Namespace) -> ChaosConfig:
    """The :class:`ChaosConfig` of parsed options (``ConfigError`` on a bad combination)."""
    return ChaosConfig(events=args.events, kills=args.kills, broker_restarts=args.broker_restarts,
                       nodes=args.nodes, broker_kills=args.broker_kills, fail_rate=args.fail_rate,
                       poison=args.poison, retry=args.retry, sink=args.sink,
                       allow_unacked=args.allow_unacked, seed=args.seed, workers=args.workers,
                       partitions=args.partitions, publish_s=args.publish_seconds,
                       publish_batch=args.publish_batch,
                       session_timeout_ms=args.session_timeout_ms, handle_ms=args.handle_ms,
                       drain_timeout_s=args.drain_timeout, consumer=args.consumer,
                       publisher=args.publisher, client=args.client, run_id=args.run_id)


def main(args: argparse.Namespace) -> int:
    """``offsetlab chaos``: exit 0 the run passed, 1 it failed (or setup failed), 2 usage,
    130 interrupted."""
    try:
        config = config_of(args)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return run_chaos(config).exit_code
    except Exception as exc:  # setup failures: say what and where, exit 1
        from offsetlab.brokers import BrokerError

        if not isinstance(exc, BrokerError | ConfigError | RuntimeError | TimeoutError):
            raise
        print(f"error: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
