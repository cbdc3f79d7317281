"""Publish N events through the bus while consumers and the broker die; count what was lost.

    offsetlab chaos --events N --kills K --broker-restarts R [--seed S] [--workers W]
                    [--partitions P] [--publish-seconds T] [--handle-ms MS]
                    [--consumer bus|raw|unsafe] [--publisher bus|raw] [--run-id ID]

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
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from offsetlab.bus.errors import ConfigError

from .chaos_worker import CONSUMER_MODES, HOLDING, MODES, RELEASE, ChaosEvent, chaos_registry
from .paths import runs_dir

__all__ = ["ChaosConfig", "ChaosResult", "run_chaos", "add_arguments", "main"]

log = logging.getLogger(__name__)

BROKER_SETTINGS = {"group.initial.rebalance.delay.ms": 0}
#: kafka-python's default ``max_poll_records``: the most a worker handles between commits
POLL_BATCH = 500
#: unsafe mode: how long a kill waits for a worker to hold a committed, unhandled batch
HOLD_WAIT_S = 60.0


@dataclass(frozen=True, kw_only=True)
class ChaosConfig:
    """One chaos run. Defaults are the acceptance run (10,000 events, 5 kills, 1 restart)."""

    events: int = 10_000
    kills: int = 5
    broker_restarts: int = 1
    #: seeds the schedule (which worker, when); None: a random seed, printed
    seed: int | None = None
    workers: int = 3
    partitions: int = 6
    #: the publisher spreads the events over about this long; kills and restarts fall in it
    publish_s: float = 30.0
    #: events per publish call (``publish_many`` when the bus has it)
    publish_batch: int = 50
    #: the workers' consumer session timeout: how soon a killed worker's partitions move
    session_timeout_ms: int = 6000
    #: simulated work per event in the handler (ms), before the event is recorded, so that
    #: a batch takes a while and a kill can land between processing and the commit
    handle_ms: float = 5.0
    #: how long to wait, after publishing, for every acknowledged event to be processed
    drain_timeout_s: float = 180.0
    #: ``bus`` (KafkaBus subscription), ``raw`` (kafka-python poll loop, commit after the
    #: batch) or ``unsafe`` (commit before the batch: loses events, to show the run sees it)
    consumer: str = "bus"
    #: ``bus`` (KafkaBus publish) or ``raw`` (KafkaProducer, flush per batch) publisher
    publisher: str = "bus"
    run_id: str | None = None
    runs_dir: Path | None = None

    def __post_init__(self) -> None:
        for key, minimum in (("events", 1), ("kills", 0), ("broker_restarts", 0), ("workers", 1),
                             ("partitions", 1), ("publish_batch", 1), ("session_timeout_ms", 1000)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"ChaosConfig.{key} must be an int >= {minimum}, got {value!r}")
        for key in ("publish_s", "drain_timeout_s"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"ChaosConfig.{key} must be a number > 0 (seconds), got {value!r}")
        if not isinstance(self.handle_ms, int | float) or not 0 <= self.handle_ms <= 1000:
            raise ConfigError(f"ChaosConfig.handle_ms must be 0..1000 (ms), got {self.handle_ms!r}")
        if self.consumer not in CONSUMER_MODES:
            raise ConfigError(f"ChaosConfig.consumer={self.consumer!r}: use one of {CONSUMER_MODES}")
        if self.publisher not in MODES:
            raise ConfigError(f"ChaosConfig.publisher={self.publisher!r}: use one of {MODES}")


@dataclass
class ChaosResult:
    run_id: str
    run_dir: Path
    config: dict[str, Any]
    seed: int
    produced: int = 0
    processed: int = 0
    lost: int = 0
    duplicated: int = 0
    redeliveries: int = 0
    written_twice: int = 0
    processed_unacknowledged: int = 0
    publish_failures: int = 0
    publisher_rebuilds: int = 0
    publish_failure_log: list[str] = field(default_factory=list)
    unacknowledged: int = 0
    lost_sample: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    #: every worker process: name, pid, exit status, events it handled
    workers: list[dict[str, Any]] = field(default_factory=list)
    drained: bool = False
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.lost else 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["exit_code"] = self.exit_code
        return data


# -- worker processes -----------------------------------------------------------------------
@dataclass
class _Worker:
    name: str
    proc: subprocess.Popen[bytes]
    out: Path
    log: Path
    started: float
    ended: float | None = None


class WorkerPool:
    """Chaos worker processes in one group. Each holds a stdin pipe to us: when this process
    dies, the kernel closes the pipe and the workers exit (see ``chaos_worker``)."""

    def __init__(self, *, folder: Path, bootstrap_servers: str, topic_prefix: str, group: str,
                 mode: str, session_timeout_ms: int, handle_ms: float) -> None:
        self.folder = folder
        self._argv = [sys.executable, "-m", "offsetlab.lab.chaos_worker",
                      "--bootstrap-servers", bootstrap_servers, "--topic-prefix", topic_prefix,
                      "--group", group, "--mode", mode,
                      "--session-timeout-ms", str(session_timeout_ms),
                      "--handle-ms", str(handle_ms)]
        self.workers: list[_Worker] = []
        self._lock = threading.Lock()
        lib = str(Path(__file__).resolve().parents[2])
        self._env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (lib, os.environ.get("PYTHONPATH", "")) if p))

    def spawn(self, *, hold: bool = False) -> _Worker:
        """Start one worker; ``hold`` (unsafe mode): it holds its first committed batch
        unhandled until :meth:`release` (see ``chaos_worker``)."""
        with self._lock:
            name = f"worker-{len(self.workers) + 1}"
            out, log_path = self.folder / f"{name}.seq", self.folder / f"{name}.log"
            extra = ["--hold-first-batch"] if hold else []
            with open(log_path, "ab") as log_file:
                proc = subprocess.Popen(
                    [*self._argv, "--out", str(out), "--name", f"chaos-{name}", *extra],
                    stdin=subprocess.PIPE, stdout=log_file, stderr=subprocess.STDOUT,
                    env=self._env)
            worker = _Worker(name, proc, out, log_path, time.monotonic())
            self.workers.append(worker)
            return worker

    def alive(self) -> list[_Worker]:
        with self._lock:
            return [w for w in self.workers if w.proc.poll() is None]

    def holding(self) -> list[tuple[_Worker, int]]:
        """Live workers that hold a committed, unhandled batch now, with its size (from the
        ``holding N committed unhandled`` line of their log, not yet followed by ``released``)."""
        found = []
        for w in self.alive():
            text = w.log.read_text(errors="replace")
            m = HOLDING.search(text)
            if m and "released" not in text[m.end():]:
                found.append((w, int(m.group(1))))
        return found

    def release(self, worker: _Worker) -> None:
        """Let a holding worker handle its batch (no-op for one that has exited)."""
        if worker.proc.poll() is None and worker.proc.stdin is not None:
            try:
                worker.proc.stdin.write(RELEASE)
                worker.proc.stdin.flush()
            except OSError:
                pass

    def kill(self, worker: _Worker) -> None:
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait(timeout=30)
        worker.ended = time.monotonic()

    def wait_joined(self, workers: Sequence[_Worker], timeout_s: float) -> None:
        """Wait until each worker's log says ``joined``; raise if one exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        pending = list(workers)
        while pending:
            for w in list(pending):
                if w.proc.poll() is not None:
                    raise RuntimeError(f"{w.name} exited with {w.proc.returncode} before joining; "
                                       f"see {w.log}:\n{_tail(w.log)}")
                if " joined" in w.log.read_text(errors="replace"):
                    pending.remove(w)
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"{', '.join(w.name for w in pending)} did not join within "
                                   f"{timeout_s:.0f} s; see {pending[0].log}:\n{_tail(pending[0].log)}")
            time.sleep(0.1)

    def stop_all(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every live worker (they commit and leave), SIGKILL what is left after
        ``timeout_s``, and close the pipes. Safe to call more than once."""
        with self._lock:
            workers = list(self.workers)
        for w in workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for w in workers:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", w.name, timeout_s)
                w.proc.kill()
                w.proc.wait(timeout=30)
            if w.ended is None:
                w.ended = time.monotonic()
            if w.proc.stdin is not None:
                try:
                    w.proc.stdin.close()
                except OSError:
                    pass


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))
    except OSError:
        return 0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ProcessedTally:
    """Reads the workers' ``.seq`` files incrementally (complete lines only) into counts."""

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self._offsets: dict[Path, int] = {}

    def update(self, files: Sequence[Path]) -> Counter[int]:
        for path in files:
            if not path.exists():
                continue
            with open(path, "rb") as f:
                f.seek(self._offsets.get(path, 0))
                data = f.read()
            end = data.rfind(b"\n") + 1  # a line being written is read next time
            for line in data[:end].split():
                self.counts[int(line)] += 1
            self._offsets[path] = self._offsets.get(path, 0) + end
        return self.counts


# -- publishing -------------------------------------------------------------------------------
#: seconds one publish call may take (the bus's ``publish_timeout_s``; the raw flush timeout)
PUBLISH_TIMEOUT_S = 10.0


class PublishClient(Protocol):
    """Publishes a batch and returns only when the broker acknowledged every event of it;
    raises otherwise (some of the batch may have been written anyway)."""

    def publish(self, events: list[ChaosEvent]) -> None: ...

    def close(self) -> None: ...


class RawPublishClient:
    """KafkaProducer (kafka-python 3 defaults: acks=all, idempotent), flushed per batch."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        from kafka import KafkaProducer

        self._registry, self._topic = chaos_registry(""), topic
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers,
                                       max_block_ms=int(PUBLISH_TIMEOUT_S * 1000))

    def publish(self, events: list[ChaosEvent]) -> None:
        futures = []
        for event in events:
            enc = self._registry.encode(event)
            futures.append(self._producer.send(self._topic, key=enc.key, value=enc.value,
                                               headers=list(enc.headers)))
        deadline = time.monotonic() + PUBLISH_TIMEOUT_S
        for f in futures:  # raises KafkaTimeoutError or the delivery error
            f.get(timeout=max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        try:
            self._producer.close(timeout=5)
        except Exception as exc:  # a wedged producer cannot flush; it is being replaced
            log.info("closing the raw producer: %s", exc)


class BusPublishClient:
    """``KafkaBus.publish_many``: send the batch, return once every event is acknowledged."""

    def __init__(self, bootstrap_servers: str, topic_prefix: str, generation: int) -> None:
        from offsetlab.bus import KafkaBus, KafkaBusConfig

        self._bus = KafkaBus(chaos_registry(topic_prefix), KafkaBusConfig(
            bootstrap_servers=bootstrap_servers, publish_timeout_s=PUBLISH_TIMEOUT_S,
            create_topics=False, name=f"chaos-publisher-{generation}"))

    def publish(self, events: list[ChaosEvent]) -> None:
        self._bus.publish_many(events)

    def close(self) -> None:
        try:
            self._bus.close(timeout_s=5)
        except Exception as exc:  # best effort: it is being replaced
            log.info("closing the publishing bus: %s", exc)


class Publisher(threading.Thread):
    """Publishes events ``0..n-1`` in batches paced over ``duration_s``.

    An event counts as acknowledged only when a publish call that contained it returned. When
    a call fails, the client is closed and a new one made (an application would do the same
    with a producer that stopped answering; see ``rebuilds``), and the same events (same event
    ids) are published again, until ``give_up_at``. So an event can be written twice (the
    failed call may have written it): the run counts those from the topic."""

    def __init__(self, make_client: Callable[[int], PublishClient], *, n: int, batch: int,
                 duration_s: float, abort: threading.Event) -> None:
        super().__init__(name="chaos-publisher", daemon=True)
        self._make_client, self._n, self._batch = make_client, n, batch
        self._duration, self._abort = duration_s, abort
        self.acked: set[int] = set()
        self.failures = 0
        self.rebuilds = 0
        self.failure_log: list[str] = []
        self.error: BaseException | None = None
        self.started_at = self.ended_at = 0.0
        self.give_up_at = float("inf")

    def run(self) -> None:
        self.started_at = time.monotonic()
        events = [ChaosEvent(seq=seq) for seq in range(self._n)]
        chunks = [events[i:i + self._batch] for i in range(0, self._n, self._batch)]
        pace = self._duration / max(1, len(chunks))
        client: PublishClient | None = None
        try:
            client = self._make_client(0)
            for k, chunk in enumerate(chunks):
                wait = self.started_at + k * pace - time.monotonic()
                if wait > 0 and self._abort.wait(wait):
                    return
                while not self._abort.is_set() and time.monotonic() < self.give_up_at:
                    began = time.monotonic()
                    try:
                        client.publish(chunk)
                    except Exception as exc:  # not acknowledged: new client, same events
                        self.failures += 1
                        self.failure_log.append(
                            f"+{began - self.started_at:.1f}s batch {k} ({len(chunk)} events) "
                            f"failed after {time.monotonic() - began:.1f} s: "
                            f"{type(exc).__name__}: {str(exc)[:200]}")
                        log.warning("%s", self.failure_log[-1])
                        client.close()
                        self.rebuilds += 1
                        client = self._make_client(self.rebuilds)
                        continue
                    self.acked.update(e.seq for e in chunk)
                    break
                else:
                    return
        except BaseException as exc:  # reported by the orchestrator
            self.error = exc
        finally:
            if client is not None:
                client.close()
            self.ended_at = time.monotonic()


# -- the run ----------------------------------------------------------------------------------
def _make_run_id(root: Path) -> str:
    from .suite import make_run_id

    return make_run_id("chaos", root)


def _schedule(rng: random.Random, count: int, window_s: float) -> list[float]:
    """``count`` moments in the middle 90 % of the window, sorted."""
    return sorted(rng.uniform(0.05 * window_s, 0.95 * window_s) for _ in range(count))


def _copies_on_topic(bootstrap_servers: str, topic: str, partitions: int,
                     timeout_s: float = 60.0) -> Counter[int]:
    """How many records of each seq the topic holds (read back with a group-less consumer)."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    registry = chaos_registry("")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False,
                             group_id=None)
    copies: Counter[int] = Counter()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} back took longer than {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    event = registry.decode(r.value)
                    copies[getattr(event, "seq", -1)] += 1
    finally:
        consumer.close(autocommit=False)
    return copies


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
        f"seed {seed} (consumer {config.consumer}, publisher {config.publisher})")
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
                              handle_ms=config.handle_ms)
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
                    return BusPublishClient(servers, prefix, generation)
                return RawPublishClient(servers, topic)

            publisher = Publisher(make_client, n=config.events, batch=config.publish_batch,
                                  duration_s=config.publish_s, abort=abort)
            stack.callback(end_threads)
            start = time.monotonic()
            publisher.give_up_at = start + config.publish_s + config.drain_timeout_s

            def pick_holder() -> tuple[_Worker, int] | None:
                deadline = time.monotonic() + HOLD_WAIT_S
                while not abort.is_set() and time.monotonic() < deadline:
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
                              "events_handled_by_victim": _lines(victim.out)}
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
            deadline = drain_start + config.drain_timeout_s
            while True:
                counts = tally.update([w.out for w in pool.workers])
                missing = len(publisher.acked - counts.keys())
                if not missing:
                    result.drained = True
                    break
                if time.monotonic() > deadline:
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
            copies = _copies_on_topic(servers, topic, config.partitions)
            _account(result, publisher.acked, counts, copies, config.events)
            result.publish_failures = publisher.failures
    except KeyboardInterrupt:
        result.interrupted = True
        say("interrupted")
    finally:
        if pool is not None:
            result.workers = [{"name": w.name, "pid": w.proc.pid, "returncode": w.proc.returncode,
                               "events": _lines(w.out)} for w in pool.workers]
    result.timings["total_s"] = rel()
    if result.interrupted:
        say("no accounting: the run was interrupted before the drain ended")
    else:
        _report(result, config, say)
    (run_dir / "chaos.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    say(f"saved: {run_dir / 'chaos.json'}")
    return result


def _account(result: ChaosResult, acked: set[int], counts: Counter[int],
             copies: Counter[int], total: int) -> None:
    processed = acked & counts.keys()
    lost = sorted(acked - counts.keys())
    result.produced = len(acked)
    result.processed = len(processed)
    result.lost = len(lost)
    result.lost_sample = lost[:20]
    result.duplicated = sum(1 for s in processed if counts[s] > 1)
    result.redeliveries = sum(counts[s] - 1 for s in processed)
    result.written_twice = sum(1 for n in copies.values() if n > 1)
    result.processed_unacknowledged = len(counts.keys() - acked)
    result.unacknowledged = total - len(acked)


def _report(result: ChaosResult, config: ChaosConfig, say: Callable[[str], None]) -> None:
    kills = sum(1 for a in result.actions if a["action"] == "kill")
    restarts = sum(1 for a in result.actions if a["action"] == "broker_restart")
    bound = (kills + restarts) * config.workers * POLL_BATCH
    say(f"produced: {result.produced}")
    say(f"processed: {result.processed}")
    say(f"lost: {result.lost}" + (f" (first: {result.lost_sample})" if result.lost else ""))
    say(f"duplicated: {result.duplicated} (extra deliveries {result.redeliveries}; written twice "
        f"by the publisher {result.written_twice}; in-flight bound (kills + restarts) x workers "
        f"x {POLL_BATCH} = {bound})")
    if result.publish_failures:
        say(f"publish: {result.publish_failures} failed publish calls, {result.publisher_rebuilds} "
            "new publish clients (the failures are in chaos.json: publish_failure_log)")
    if result.unacknowledged or result.processed_unacknowledged:
        say(f"unacknowledged: {result.unacknowledged} never acknowledged, "
            f"{result.processed_unacknowledged} of them processed anyway")
    t = result.timings
    parts = [f"{name} {t[key]:.1f} s" for name, key in
             (("broker start", "broker_start_s"), ("workers joined", "workers_joined_s"),
              ("publish", "publish_s"), ("drain", "drain_s"), ("stop", "stop_workers_s"),
              ("total", "total_s")) if key in t]
    say(f"timings: {', '.join(parts)}; done: kills {kills}, broker restarts {restarts}")


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
                             publisher=args.publisher, run_id=args.run_id)
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
