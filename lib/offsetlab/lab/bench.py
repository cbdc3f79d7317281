"""Benchmark the bus against raw kafka-python: same broker, same delivery semantics.

    offsetlab bench [--messages N] [--repeat R] [--partitions P] [--broker kafka|tansu|...]
                    [--bootstrap-servers HOST:PORT] [--run-id ID]

A benchmark, not a test: it measures and reports, it never fails on a number. One run, one
broker, one topic layout (every topic has P partitions); each repeat measures, alternating
which side goes first:

produce (same producer settings on both sides: ``acks=all``, ``linger_ms=0``; all N sent,
then flushed once at the end)
    - ``raw``: ``KafkaProducer.send()`` of the very bytes the bus writes (envelopes encoded
      before the clock starts), then ``flush()``;
    - ``raw+json``: the same, but each value is built with ``json.dumps`` inside the loop
      (what a raw application serializing its data pays);
    - ``bus``: ``KafkaBus.publish_many(events)`` (encode, send all, wait for every
      acknowledgement).

consume (the topic the bus wrote, a fresh group per side, manual commits once per batch)
    - ``raw``: ``poll()`` loop, a no-op handler per record, ``commit()`` after each batch;
    - ``raw+json``: the same with ``json.loads`` of each value in the handler;
    - ``bus``: ``subscribe(BenchEvent, handler)`` with a no-op handler (the bus decodes the
      envelope, dispatches, settles, commits once per batch).

A consume rate is ``N / (last record handled - first record handled)`` over the N + 1 records
of the topic: the group join and the first fetch are outside the clock on both sides, so the
window is steady-state handling, which needs N well above one poll batch (500 records). Rates
are medians over the repeats; CPU seconds of this process per message are reported beside
them (steadier than the wall clock on a shared machine).
It prints each rate and each ratio ``bus / raw`` (and ``bus / raw+json`` for context) on a
line with the word ``ratio``, and saves ``data/runs/<run-id>/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, ClassVar

from offsetlab.bus.errors import ConfigError
from offsetlab.bus.events import Event, EventRegistry

from .paths import runs_dir

__all__ = ["BenchConfig", "BenchResult", "BenchEvent", "run_bench", "add_arguments", "main"]

log = logging.getLogger(__name__)

BROKER_KINDS = ("auto", "kafka", "tansu", "testcontainers", "external")
#: producer settings both sides use (kafka-python 3 defaults, spelled out)
PRODUCER_SETTINGS: dict[str, Any] = {"acks": "all", "linger_ms": 0}
SIDES = ("raw", "raw+json", "bus")
#: kafka-python's default ``max_poll_records`` (both sides keep it)
CONSUMER_BATCH = 500
OPS = ("produce", "consume")


@dataclass(frozen=True, kw_only=True)
class BenchEvent(Event):
    """A benchmark event: a sequence number and a short text (about 230 bytes enveloped)."""

    topic: ClassVar[str] = "bench.events"
    seq: int
    note: str = "offsetlab bench"

    @property
    def key(self) -> str:
        return str(self.seq)


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    messages: int = 20_000
    repeat: int = 3
    partitions: int = 6
    broker: str = "kafka"
    bootstrap_servers: str | None = None
    #: seconds one measurement may take before the bench gives up on it
    timeout_s: float = 300.0
    run_id: str | None = None
    runs_dir: Path | None = None

    def __post_init__(self) -> None:
        for key, minimum in (("messages", 2), ("repeat", 1), ("partitions", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"BenchConfig.{key} must be an int >= {minimum}, got {value!r}")
        if self.broker not in BROKER_KINDS:
            raise ConfigError(f"BenchConfig.broker={self.broker!r}: use one of {BROKER_KINDS}")
        if not isinstance(self.timeout_s, int | float) or self.timeout_s <= 0:
            raise ConfigError(f"BenchConfig.timeout_s must be > 0 seconds, got {self.timeout_s!r}")


@dataclass
class BenchResult:
    run_id: str
    run_dir: Path
    config: dict[str, Any]
    broker: dict[str, Any] = field(default_factory=dict)
    #: one row per measurement: repeat, op, side, messages, seconds, rate
    measurements: list[dict[str, Any]] = field(default_factory=list)
    #: "<op> <side>" -> median messages/s
    rates: dict[str, float] = field(default_factory=dict)
    #: "<op> <side>" -> median CPU microseconds per message (this process, all threads)
    cpu_us: dict[str, float] = field(default_factory=dict)
    #: "<op> bus/raw", "<op> bus/raw+json": ratio of median rates; "<op> cpu raw/bus": ratio
    #: of median CPU per message (raw over bus, so that it too reads "higher is better")
    ratios: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        return data


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of a measurement and the CPU seconds this process spent in it (all
    its threads: kafka-python's IO thread, the bus's runner). CPU time is the steadier number
    on a shared machine; the wall clock is what the target is about."""

    wall_s: float
    cpu_s: float

    @classmethod
    def since(cls, wall0: float, cpu0: float) -> Timing:
        return cls(time.perf_counter() - wall0, time.process_time() - cpu0)


class _Clock:
    """First and last moment a handler ran, and a count; ``done`` once ``n`` were handled."""

    def __init__(self, n: int) -> None:
        self.n, self.count = n, 0
        self.first = self.first_cpu = 0.0
        self.timing = Timing(0.0, 0.0)
        self.done = threading.Event()

    def tick(self) -> None:
        if self.count == 0:
            self.first, self.first_cpu = time.perf_counter(), time.process_time()
        self.count += 1
        if self.count == self.n:
            self.timing = Timing.since(self.first, self.first_cpu)
            self.done.set()


# -- the measurements ----------------------------------------------------------------------------
def _envelope_json(seq: int) -> bytes:
    """What a raw application would write for the same data: the same shape as the bus's."""
    return json.dumps({"event_type": "BenchEvent", "event_id": str(uuid.uuid4()),
                       "occurred_at": datetime.now(UTC).isoformat(), "schema_version": 1,
                       "payload": {"note": "offsetlab bench", "seq": seq}},
                      separators=(",", ":"), sort_keys=True).encode()


def produce_raw(servers: str, topic: str, n: int, registry: EventRegistry, *,
                serialize: bool) -> Timing:
    """Time to send ``n`` records and flush once (``serialize``: json.dumps in the loop)."""
    from kafka import KafkaProducer

    encoded = [] if serialize else [registry.encode(BenchEvent(seq=i)) for i in range(n)]
    producer = KafkaProducer(bootstrap_servers=servers, **PRODUCER_SETTINGS)
    try:
        producer.partitions_for(topic)  # metadata outside the clock, as for the bus below
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if serialize:
            for i in range(n):
                producer.send(topic, key=str(i).encode(), value=_envelope_json(i))
        else:
            for e in encoded:
                producer.send(topic, key=e.key, value=e.value, headers=list(e.headers))
        producer.flush()
        return Timing.since(wall0, cpu0)
    finally:
        producer.close(timeout=10)


def produce_bus(bus: Any, n: int) -> Timing:
    """Time of ``bus.publish_many`` of ``n`` events (encode, send all, wait all)."""
    bus.publish_many([BenchEvent(seq=0)])  # producer and metadata outside the clock
    events = [BenchEvent(seq=i) for i in range(1, n + 1)]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    bus.publish_many(events)
    return Timing.since(wall0, cpu0)


def consume_raw(servers: str, topic: str, group: str, n: int, *, decode: bool,
                timeout_s: float) -> Timing:
    """Time between the first and the n-th record handled by a poll loop that commits
    once per batch (``decode``: json.loads each value)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=servers, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    clock = _Clock(n)
    handle: Callable[[Any], object] = (
        (lambda r: json.loads(r.value)) if decode else (lambda r: None))
    deadline = time.monotonic() + timeout_s
    try:
        while not clock.done.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw consumer of {topic} handled {clock.count} of {n} "
                                   f"records in {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=100).values():
                for record in records:
                    handle(record)
                    clock.tick()
            if clock.count:
                consumer.commit()
    finally:
        consumer.close(autocommit=False)
    return clock.timing


def consume_bus(bus: Any, group: str, n: int, *, timeout_s: float) -> Timing:
    """Time between the first and the n-th event handled by a no-op bus handler."""
    clock = _Clock(n)

    def handler(event: Event) -> None:
        clock.tick()

    sub = bus.subscribe(BenchEvent, handler, group=group)
    try:
        sub.run(timeout=min(120.0, timeout_s))
        if not clock.done.wait(timeout_s):
            raise TimeoutError(f"bus subscription {group} handled {clock.count} of {n} events "
                               f"in {timeout_s:.0f} s")
    finally:
        sub.stop(timeout=30)
    return clock.timing


# -- the run --------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    from .suite import versions

    return versions()


def _one_repeat(config: BenchConfig, broker: Any, run_id: str, r: int, result: BenchResult,
                say: Callable[[str], None]) -> None:
    """One repeat: fresh topics and groups, every side produced, then every side consumed
    (even repeats raw first, odd repeats bus first)."""
    from offsetlab.bus import KafkaBus, KafkaBusConfig

    from .raw import create_topic

    n, servers, prefix = config.messages, broker.bootstrap_servers, f"{run_id}.{r}."
    registry = EventRegistry([BenchEvent], topic_prefix=prefix)
    bus_topic = registry.topic_for(BenchEvent)
    raw_topic, json_topic = f"{prefix}bench.raw", f"{prefix}bench.rawjson"
    for topic in (bus_topic, raw_topic, json_topic):
        create_topic(broker, topic, config.partitions)
    bus = KafkaBus(registry, KafkaBusConfig(
        bootstrap_servers=servers, publish_producer=PRODUCER_SETTINGS,
        publish_timeout_s=config.timeout_s, create_topics=False, name=f"bench-{r}"))
    try:
        produce: dict[str, Callable[[], Timing]] = {
            "raw": lambda: produce_raw(servers, raw_topic, n, registry, serialize=False),
            "raw+json": lambda: produce_raw(servers, json_topic, n, registry, serialize=True),
            "bus": lambda: produce_bus(bus, n),
        }
        # the bus topic holds n + 1 events (its warm-up publish): n gaps first to last
        consume: dict[str, Callable[[], Timing]] = {
            "raw": lambda: consume_raw(servers, bus_topic, f"{prefix}raw", n + 1, decode=False,
                                       timeout_s=config.timeout_s),
            "raw+json": lambda: consume_raw(servers, bus_topic, f"{prefix}rawjson", n + 1,
                                            decode=True, timeout_s=config.timeout_s),
            "bus": lambda: consume_bus(bus, f"{prefix}bus", n + 1, timeout_s=config.timeout_s),
        }
        order = SIDES if r % 2 == 0 else tuple(reversed(SIDES))
        for op, table in (("produce", produce), ("consume", consume)):
            for side in order:
                t = table[side]()
                rate = n / t.wall_s if t.wall_s > 0 else float("inf")
                cpu_us = t.cpu_s / n * 1e6
                result.measurements.append({"repeat": r, "op": op, "side": side, "messages": n,
                                            "seconds": round(t.wall_s, 6), "rate": rate,
                                            "cpu_s": round(t.cpu_s, 6),
                                            "cpu_us_per_message": cpu_us})
                say(f"  repeat {r + 1}: {op} {side:<8} {rate:>10,.0f} msg/s ({t.wall_s:.3f} s; "
                    f"{cpu_us:.1f} us CPU/message)")
    finally:
        bus.close()


def _summarize(result: BenchResult) -> None:
    """Medians per (op, side) and the ratios, from ``result.measurements``."""
    for op in OPS:
        for side in SIDES:
            rows = [m for m in result.measurements if m["op"] == op and m["side"] == side]
            result.rates[f"{op} {side}"] = statistics.median(m["rate"] for m in rows)
            result.cpu_us[f"{op} {side}"] = statistics.median(m["cpu_us_per_message"] for m in rows)
        for base in ("raw", "raw+json"):
            result.ratios[f"{op} bus/{base}"] = (
                result.rates[f"{op} bus"] / result.rates[f"{op} {base}"])
        result.ratios[f"{op} cpu raw/bus"] = result.cpu_us[f"{op} raw"] / result.cpu_us[f"{op} bus"]


def run_bench(config: BenchConfig, *, broker: Any = None, out: IO[str] | None = None) -> BenchResult:
    """Run the benchmark; ``broker``: a running handle to use (default: start ``config.broker``)."""
    from contextlib import ExitStack

    out = out or sys.stdout
    root = config.runs_dir or runs_dir()
    if config.run_id:
        run_id = config.run_id
    else:
        from .suite import make_run_id

        run_id = make_run_id("bench", root)
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    result = BenchResult(run_id=run_id, run_dir=run_dir, versions=_versions(),
                         config={k: (str(v) if isinstance(v, Path) else v)
                                 for k, v in asdict(config).items()})
    n = config.messages

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    with ExitStack() as stack:
        if broker is None:
            from offsetlab.brokers import start_broker

            settings = {"group.initial.rebalance.delay.ms": 0} if config.broker == "kafka" else None
            broker = stack.enter_context(start_broker(
                config.broker, settings=settings, bootstrap_servers=config.bootstrap_servers))
        servers = broker.bootstrap_servers
        result.broker = {"kind": broker.kind, "version": broker.version,
                         "bootstrap_servers": servers}
        say(f"bench run {run_id}: {n} messages x {config.repeat} repeats, {config.partitions} "
            f"partitions, {broker.kind} {broker.version} at {servers}; producer {PRODUCER_SETTINGS}")
        if n < 10 * CONSUMER_BATCH:
            say(f"note: {n} messages is a smoke test, not a measurement: the consumers fetch "
                f"up to {CONSUMER_BATCH} records a poll, so a short consume window is mostly one "
                "prefetched batch; use --messages 20000 or more for numbers")
        for r in range(config.repeat):
            _one_repeat(config, broker, run_id, r, result, say)
    _summarize(result)
    for op in OPS:
        for side in SIDES:
            say(f"{op} {side:<8} {result.rates[f'{op} {side}']:>10,.0f} msg/s, "
                f"{result.cpu_us[f'{op} {side}']:.1f} us CPU/message (medians)")
    for op in OPS:
        say(f"{op} ratio bus/raw: {result.ratios[f'{op} bus/raw']:.3g} (throughput; target >= 0.9)")
    for op in OPS:
        say(f"{op} ratio bus/raw+json: {result.ratios[f'{op} bus/raw+json']:.3g} (throughput; "
            "context: the raw side also does JSON)")
    for op in OPS:
        say(f"{op} cpu ratio raw/bus: {result.ratios[f'{op} cpu raw/bus']:.3g} (CPU per message, "
            "steadier on a busy machine; above 1 is the bus cheaper)")
    (run_dir / "bench.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    say(f"saved: {run_dir / 'bench.json'}")
    return result


# -- CLI ------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``offsetlab bench`` options."""
    d = BenchConfig()
    parser.add_argument("--messages", type=int, default=d.messages,
                        help=f"messages per measurement ({d.messages})")
    parser.add_argument("--repeat", type=int, default=d.repeat,
                        help=f"repeats; rates are medians ({d.repeat})")
    parser.add_argument("--partitions", type=int, default=d.partitions,
                        help=f"partitions of every topic ({d.partitions})")
    parser.add_argument("--broker", choices=BROKER_KINDS, default=d.broker)
    parser.add_argument("--bootstrap-servers", default=None,
                        help="an external cluster (with --broker external or auto)")
    parser.add_argument("--timeout", type=float, default=d.timeout_s,
                        help=f"seconds one measurement may take ({d.timeout_s:.0f})")
    parser.add_argument("--run-id", default=None, help="default: <UTC time>-bench")


def main(args: argparse.Namespace) -> int:
    """``offsetlab bench``: exit 0 when every measurement ran, 1 when one failed, 2 usage."""
    try:
        config = BenchConfig(messages=args.messages, repeat=args.repeat,
                             partitions=args.partitions, broker=args.broker,
                             bootstrap_servers=args.bootstrap_servers,
                             timeout_s=args.timeout, run_id=args.run_id)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    try:
        run_bench(config)
    except KeyboardInterrupt:
        print("interrupted")
        return 130
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {exc}")
        return 1
    return 0
