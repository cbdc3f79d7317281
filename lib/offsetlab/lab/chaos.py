"""Publish N events through the bus while consumers and the broker die; count what was lost.

    offsetlab chaos --events N --kills K --broker-restarts R [--seed S] [--workers W]
                    [--partitions P] [--publish-seconds T] [--handle-ms MS]
                    [--consumer bus|raw|unsafe] [--publisher bus|raw]
                    [--client kafka-python|confluent-kafka] [--run-id ID]

One run: a ``kafka`` broker (started here, restartable in place), a topic with P partitions,
W consumer worker processes (:mod:`offsetlab.lab.chaos_worker`) in one consumer group, a
publisher thread that spreads N events over about T seconds, and two schedulers: one SIGKILLs
a random worker K times at random moments of the publishing window (a replacement is started
at once), the other restarts the broker R times (``BrokerHandle.restart()``: same port, same
data). Then it waits until every acknowledged event was handled (or ``--drain-timeout``),
stops the workers, reads the topic back and prints::

    produced: 10000      events the broker acknowledged (publish returned)
    processed: 10000     of those, how many a handler processed at least once
    lost: 0              acknowledged and never processed
    duplicated: 212 ...  processed more than once

The accounting rests on the workers' files: a handler does its (simulated, ``--handle-ms``)
work, appends the event's ``seq`` and flushes it to the kernel before it returns, so before
its record can be committed; a SIGKILL between processing and commit shows up as a
duplicate, never as a loss. An event counts as produced only when a publish call containing
it returned; a failed call is retried with a new client (kafka-python 3.0.12's idempotent
producer can stop completing sends after a broker restart), so an event can be written
twice: those are counted from the topic itself and reported apart. ``--consumer unsafe``
(commit before handling) is the negative control: its runs report lost events by
construction, not by timing luck. Each unsafe worker holds its first committed batch
unhandled; a kill waits (up to ``HOLD_WAIT_S``) for a holding worker and SIGKILLs it, so the
victim's committed, unhandled records are lost; after the last kill the others are released.

Exit status: 0 nothing lost, 1 something lost (or the run could not be set up), 2 usage
error, 130 interrupted. Results: ``data/runs/<run-id>/chaos.json`` and the workers' files
and logs in ``data/runs/<run-id>/chaos/``.

Modules: :mod:`~offsetlab.lab.chaos_config` (the parameters, the result and its
accounting), :mod:`~offsetlab.lab.chaos_workers` (the worker processes and their counts),
:mod:`~offsetlab.lab.chaos_publish` (the publisher); this module runs them and is the CLI.
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
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from offsetlab.bus.deadline import Deadline
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.testing import read_topic
from offsetlab.bus.transports import CLIENTS

from .chaos_config import ChaosConfig, ChaosResult, account, report
from .chaos_publish import BusPublishClient, PublishClient, Publisher, RawPublishClient
from .chaos_worker import CONSUMER_MODES, MODES, ChaosEvent, chaos_registry
from .chaos_workers import ProcessedTally, Worker, WorkerPool, lines_in
from .paths import runs_dir

__all__ = ["ChaosConfig", "ChaosResult", "run_chaos", "add_arguments", "main"]

log = logging.getLogger(__name__)

BROKER_SETTINGS = {"group.initial.rebalance.delay.ms": 0}
#: unsafe mode: how long a kill waits for a worker to hold a committed, unhandled batch
HOLD_WAIT_S = 60.0


# -- the run ----------------------------------------------------------------------------------
def _make_run_id(root: Path) -> str:
    from .suite import make_run_id

    return make_run_id("chaos", root)


def _schedule(rng: random.Random, count: int, window_s: float) -> list[float]:
    """``count`` moments in the middle 90 % of the window, sorted."""
    return sorted(rng.uniform(0.05 * window_s, 0.95 * window_s) for _ in range(count))


def _copies_on_topic(bootstrap_servers: str, topic: str, timeout_s: float = 60.0) -> Counter[int]:
    """How many records of each seq the topic holds (read back with a group-less consumer)."""
    registry = chaos_registry("")
    return Counter(getattr(registry.decode(r.value), "seq", -1)
                   for r in read_topic(bootstrap_servers, topic, timeout_s=timeout_s))


def run_chaos(config: ChaosConfig, *, broker: Any = None, out: IO[str] | None = None) -> ChaosResult:
    """Run one chaos experiment; print progress and the result lines to ``out``.

    ``broker``: a running, restartable ``kafka`` :class:`~offsetlab.brokers.BrokerHandle`
    to use (tests pass one); default: start one for the run and stop it at the end."""
    from contextlib import ExitStack

    out = out or sys.stdout
    root = config.runs_dir or runs_dir()
    run_id = config.run_id or _make_run_id(root)
    run_dir = root / run_id
    folder = run_dir / "chaos"
    folder.mkdir(parents=True, exist_ok=True)
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)
    result = ChaosResult(run_id=run_id, run_dir=run_dir, seed=seed,
                         config={k: (str(v) if isinstance(v, Path) else v)
                                 for k, v in asdict(config).items()})

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    t0 = time.monotonic()

    def rel() -> float:
        return round(time.monotonic() - t0, 3)

    say(f"chaos run {run_id}: events {config.events}, workers {config.workers}, partitions "
        f"{config.partitions}, kills {config.kills}, broker restarts {config.broker_restarts}, "
        f"seed {seed} (consumer {config.consumer}, publisher {config.publisher}, "
        f"client {config.client})")
    abort = threading.Event()
    threads: list[threading.Thread] = []
    tally = ProcessedTally()
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

                broker = stack.enter_context(start_broker("kafka", settings=BROKER_SETTINGS))
                result.timings["broker_start_s"] = round(broker.cold_start_s, 3)
            if config.broker_restarts and not broker.can("restartable"):
                raise ConfigError(f"--broker-restarts needs a restartable broker (kind 'kafka'), "
                                  f"got kind {broker.kind!r}")
            servers = broker.bootstrap_servers
            prefix = f"{run_id}."
            topic = chaos_registry(prefix).topic_for(ChaosEvent)
            from .raw import create_topic

            create_topic(broker, topic, config.partitions)
            group = f"{run_id}-group"
            pool = WorkerPool(folder=folder, bootstrap_servers=servers, topic_prefix=prefix,
                              group=group, mode=config.consumer,
                              session_timeout_ms=config.session_timeout_ms,
                              handle_ms=config.handle_ms, client=config.client)
            stack.callback(pool.stop_all, 10.0)
            # the negative control holds a committed batch in every worker until a kill picks
            # one: the victim dies with records committed and unhandled, whatever the timing
            hold = config.consumer == "unsafe" and config.kills > 0
            first = [pool.spawn(hold=hold) for _ in range(config.workers)]
            pool.wait_joined(first, timeout_s=90)
            result.timings["workers_joined_s"] = rel()
            say(f"+{rel():.1f}s topic {topic} ({config.partitions} partitions), "
                f"{config.workers} workers joined group {group}")

            def make_client(generation: int) -> PublishClient:
                if config.publisher == "bus":
                    return BusPublishClient(servers, prefix, generation, client=config.client)
                return RawPublishClient(servers, topic)

            publisher = Publisher(make_client, n=config.events, batch=config.publish_batch,
                                  duration_s=config.publish_s, abort=abort)
            stack.callback(end_threads)
            start = time.monotonic()
            publisher.give_up_at = start + config.publish_s + config.drain_timeout_s

            def pick_holder() -> tuple[Worker, int] | None:
                deadline = Deadline(HOLD_WAIT_S)
                while not abort.is_set() and not deadline.expired():
                    if holders := pool.holding():
                        return rng.choice(holders)
                    abort.wait(0.05)
                return None

            def killer(at: list[float]) -> None:
                try:
                    kill_on_schedule(at)
                except Exception as exc:  # reported: a run whose kills did not happen says so
                    result.actions.append({"at_s": rel(), "action": "kill", "error": repr(exc)})
                    say(f"+{rel():.1f}s killer FAILED: {exc!r}")
                finally:  # no more kills: the workers that hold a batch may handle it
                    if hold:
                        for w in pool.alive():
                            pool.release(w)

            def kill_on_schedule(at: list[float]) -> None:
                for i, moment in enumerate(at):
                    if abort.wait(max(0.0, start + moment - time.monotonic())):
                        return
                    held: int | None = None
                    if hold:
                        picked = pick_holder()
                        if picked is None:
                            result.actions.append({"at_s": rel(), "action": "kill", "error":
                                                   f"no worker held a committed batch within "
                                                   f"{HOLD_WAIT_S:.0f} s"})
                            say(f"+{rel():.1f}s kill skipped: no worker held a committed batch")
                            continue
                        victim, held = picked
                    else:
                        alive = pool.alive()
                        if not alive:
                            continue
                        victim = rng.choice(alive)
                    pool.kill(victim)
                    replacement = pool.spawn(hold=hold and i < len(at) - 1)
                    action = {"at_s": rel(), "action": "kill", "worker": victim.name,
                              "pid": victim.proc.pid, "replacement": replacement.name,
                              "events_handled_by_victim": lines_in(victim.out)}
                    if held is not None:
                        action["committed_unhandled"] = held
                    result.actions.append(action)
                    say(f"+{action['at_s']:.1f}s SIGKILL {victim.name} (pid {victim.proc.pid}, "
                        f"{action['events_handled_by_victim']} events handled"
                        + (f", {held} committed and unhandled" if held is not None else "")
                        + f"); started {replacement.name}")

            def restarter(at: list[float]) -> None:
                for moment in at:
                    if abort.wait(max(0.0, start + moment - time.monotonic())):
                        return
                    began = rel()
                    try:
                        took = broker.restart()
                    except Exception as exc:  # reported; the drain then shows what it cost
                        result.actions.append({"at_s": began, "action": "broker_restart",
                                               "error": repr(exc)})
                        say(f"+{began:.1f}s broker restart FAILED: {exc}")
                        return
                    action = {"at_s": began, "action": "broker_restart",
                              "down_s": round(rel() - began, 3),
                              "answering_after_start_s": round(took, 3)}
                    result.actions.append(action)
                    say(f"+{began:.1f}s broker restarted (down {action['down_s']:.1f} s)")

            kill_at = _schedule(rng, config.kills, config.publish_s)
            restart_at = _schedule(rng, config.broker_restarts, config.publish_s)
            threads.extend([
                publisher,
                threading.Thread(target=killer, args=(kill_at,), name="chaos-killer", daemon=True),
                threading.Thread(target=restarter, args=(restart_at,), name="chaos-restarter",
                                 daemon=True)])
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
            drain_start = time.monotonic()
            deadline = Deadline(config.drain_timeout_s)
            while True:
                counts = tally.update([w.out for w in pool.workers])
                missing = len(publisher.acked - counts.keys())
                if not missing:
                    result.drained = True
                    break
                if deadline.expired():
                    say(f"+{rel():.1f}s drain timed out after {config.drain_timeout_s:.0f} s: "
                        f"{missing} acknowledged events never processed")
                    break
                for w in pool.workers:
                    if w.proc.poll() is not None and w.ended is None:
                        say(f"+{rel():.1f}s {w.name} exited on its own "
                            f"({w.proc.returncode}); see {w.log}")
                        w.ended = time.monotonic()
                time.sleep(0.2)
            result.timings["drain_s"] = round(time.monotonic() - drain_start, 3)
            stop_began = time.monotonic()
            pool.stop_all()
            result.timings["stop_workers_s"] = round(time.monotonic() - stop_began, 3)
            counts = tally.update([w.out for w in pool.workers])
            copies = _copies_on_topic(servers, topic)
            account(result, publisher.acked, counts, copies, config.events)
            result.publish_failures = publisher.failures
    except KeyboardInterrupt:
        result.interrupted = True
        say("interrupted")
    finally:
        if pool is not None:
            result.workers = [{"name": w.name, "pid": w.proc.pid, "returncode": w.proc.returncode,
                               "events": lines_in(w.out)} for w in pool.workers]
    result.timings["total_s"] = rel()
    if result.interrupted:
        say("no accounting: the run was interrupted before the drain ended")
    else:
        report(result, config, say)
    (run_dir / "chaos.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    say(f"saved: {run_dir / 'chaos.json'}")
    return result


# -- CLI --------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``offsetlab chaos`` options."""
    d = ChaosConfig()
    parser.add_argument("--events", type=int, default=d.events, help=f"events to publish ({d.events})")
    parser.add_argument("--kills", type=int, default=d.kills, help=f"consumer SIGKILLs ({d.kills})")
    parser.add_argument("--broker-restarts", type=int, default=d.broker_restarts,
                        help=f"in-place broker restarts ({d.broker_restarts})")
    parser.add_argument("--seed", type=int, default=None, help="schedule seed (default: random, printed)")
    parser.add_argument("--workers", type=int, default=d.workers, help=f"consumer processes ({d.workers})")
    parser.add_argument("--partitions", type=int, default=d.partitions, help=f"topic partitions ({d.partitions})")
    parser.add_argument("--publish-seconds", type=float, default=d.publish_s,
                        help=f"spread publishing over about this long ({d.publish_s:.0f})")
    parser.add_argument("--publish-batch", type=int, default=d.publish_batch,
                        help=f"events per publish call ({d.publish_batch})")
    parser.add_argument("--session-timeout-ms", type=int, default=d.session_timeout_ms,
                        help=f"workers' consumer session timeout ({d.session_timeout_ms})")
    parser.add_argument("--handle-ms", type=float, default=d.handle_ms,
                        help=f"simulated work per event in the handlers, ms ({d.handle_ms:g})")
    parser.add_argument("--drain-timeout", type=float, default=d.drain_timeout_s,
                        help=f"seconds to wait for every acknowledged event ({d.drain_timeout_s:.0f})")
    parser.add_argument("--consumer", choices=CONSUMER_MODES, default=d.consumer,
                        help="bus (default), raw, or unsafe (commits before handling: loses "
                             "events, to show that the run detects it)")
    parser.add_argument("--publisher", choices=MODES, default=d.publisher)
    parser.add_argument("--client", choices=CLIENTS, default=d.client,
                        help=f"the bus's client library, publisher and consumers ({d.client})")
    parser.add_argument("--run-id", default=None, help="default: <UTC time>-chaos")


def main(args: argparse.Namespace) -> int:
    """``offsetlab chaos``: exit 0 nothing lost, 1 lost (or setup failed), 2 usage, 130 interrupted."""
    try:
        config = ChaosConfig(events=args.events, kills=args.kills,
                             broker_restarts=args.broker_restarts, seed=args.seed,
                             workers=args.workers, partitions=args.partitions,
                             publish_s=args.publish_seconds, publish_batch=args.publish_batch,
                             session_timeout_ms=args.session_timeout_ms,
                             handle_ms=args.handle_ms,
                             drain_timeout_s=args.drain_timeout, consumer=args.consumer,
                             publisher=args.publisher, client=args.client,
                             run_id=args.run_id)
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
