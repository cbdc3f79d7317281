"""Benchmark the bus against the raw client underneath it: kafka-python, confluent-kafka or both.

    offsetlab bench [--client kafka-python|confluent-kafka|all] [--messages N]
                    [--confluent-messages N] [--repeat R] [--partitions P]
                    [--broker kafka|tansu|...] [--bootstrap-servers HOST:PORT] [--run-id ID]

A benchmark, not a test: it measures and reports, it never fails on a number. One run, one
broker, one topic layout (every topic has P partitions). First the envelope's parts are
timed alone (:mod:`offsetlab.lab.bench_envelope`); then each repeat measures, per client,
three sides of publish and of consume (raw, raw+json: :mod:`offsetlab.lab.bench_raw`; bus:
:mod:`offsetlab.lab.bench_bus`), alternating which client and which side goes first.

Every consume side reads the topic the bus wrote in that repeat (N + 1 events: one was
published before the clock). A consume rate is ``N / (last record handled - first record
handled)``: the group join and the first fetch are outside the clock on every side, so the
window is steady-state handling, which needs N well above one poll batch (500 records).
Rates and CPU microseconds per message (this process, all threads; steadier than the wall
clock on a shared machine) are medians over the repeats; ratios and costs are taken within
each repeat first (its sides ran within seconds of each other), then the median.

Printed per client: ``<client> publish ratio bus/raw: X`` and ``<client> consume ratio
bus/raw: X`` (throughput; beside it the CPU ratio, what the throughput ratio would be if
this process were the bottleneck), the same against raw+json for context, and ``<client> bus cost per
message: publish N us, consume N us`` (the bus's CPU per message minus raw+json's, paired
per repeat, median: what the bus itself costs beyond the client and the JSON). With both
clients: ``bus confluent-kafka/kafka-python publish: X`` and ``... consume: X`` (bus
throughput). Everything is saved to ``data/runs/<run-id>/bench.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from offsetlab.bus.errors import ConfigError
from offsetlab.bus.events import EventRegistry

from .bench_bus import BenchEvent, consume_bus, produce_bus
from .bench_envelope import envelope_parts, format_parts
from .bench_raw import CONSUMER_BATCH, PRODUCER_SETTINGS, JsonLib, Timing, consume_raw, json_lib
from .bench_raw import produce_raw as _produce_raw
from .paths import runs_dir

__all__ = ["BenchConfig", "BenchResult", "BenchEvent", "run_bench", "add_arguments", "main",
           "CLIENTS"]

log = logging.getLogger(__name__)

BROKER_KINDS = ("auto", "kafka", "tansu", "testcontainers", "external")
CLIENTS = ("kafka-python", "confluent-kafka")
SIDES = ("raw", "raw+json", "bus")
OPS = ("publish", "consume")
#: what the issue asks of the numbers (printed beside them; the bench never fails on them)
TARGETS = {"kafka-python ratio": "target >= 0.9", "confluent-kafka cost": "target <= 5 us",
           "cross": "target >= 10"}


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    clients: tuple[str, ...] = ("kafka-python",)
    #: messages per measurement on kafka-python
    messages: int = 20_000
    #: messages per measurement on confluent-kafka (``None``: 5 x ``messages``; it is about
    #: ten times faster, and a window of a few milliseconds measures little)
    confluent_messages: int | None = None
    repeat: int = 3
    partitions: int = 6
    #: every producer's ``linger_ms`` (5: librdkafka's and Kafka 4's Java default, and what
    #: the issue's first measurements used; 0 is kafka-python's default)
    linger_ms: int = 5
    broker: str = "kafka"
    bootstrap_servers: str | None = None
    #: seconds one measurement may take before the bench gives up on it
    timeout_s: float = 300.0
    run_id: str | None = None
    runs_dir: Path | None = None

    def __post_init__(self) -> None:
        for key, minimum in (("messages", 2), ("repeat", 1), ("partitions", 1),
                             ("linger_ms", 0)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"BenchConfig.{key} must be an int >= {minimum}, got {value!r}")
        cm = self.confluent_messages
        if cm is not None and (not isinstance(cm, int) or isinstance(cm, bool) or cm < 2):
            raise ConfigError(f"BenchConfig.confluent_messages must be an int >= 2 or None, "
                              f"got {cm!r}")
        if not self.clients or any(c not in CLIENTS for c in self.clients):
            raise ConfigError(f"BenchConfig.clients={self.clients!r}: use some of {CLIENTS}")
        if self.broker not in BROKER_KINDS:
            raise ConfigError(f"BenchConfig.broker={self.broker!r}: use one of {BROKER_KINDS}")
        if not isinstance(self.timeout_s, int | float) or self.timeout_s <= 0:
            raise ConfigError(f"BenchConfig.timeout_s must be > 0 seconds, got {self.timeout_s!r}")

    @property
    def producer_settings(self) -> dict[str, Any]:
        return {**PRODUCER_SETTINGS, "linger_ms": self.linger_ms}

    def messages_for(self, client: str) -> int:
        if client == "confluent-kafka":
            return self.confluent_messages or 5 * self.messages
        return self.messages


@dataclass
class BenchResult:
    run_id: str
    run_dir: Path
    config: dict[str, Any]
    broker: dict[str, Any] = field(default_factory=dict)
    #: microseconds per event of the envelope's parts (bench_envelope)
    envelope: dict[str, Any] = field(default_factory=dict)
    #: the JSON library of the bus and of the raw+json sides
    json: str = ""
    #: one row per measurement: repeat, client, op, side, messages, seconds, rate, CPU
    measurements: list[dict[str, Any]] = field(default_factory=list)
    #: "<client> <op> <side>" -> median messages/s
    rates: dict[str, float] = field(default_factory=dict)
    #: "<client> <op> <side>" -> median CPU microseconds per message (this process)
    cpu_us: dict[str, float] = field(default_factory=dict)
    #: "<client> <op> bus/raw", "<client> <op> bus/raw+json": the repeats' rate ratios
    #: (both sides measured in the same repeat), median; "bus confluent-kafka/kafka-python
    #: <op>": the bus's rate on confluent-kafka over kafka-python, likewise
    ratios: dict[str, float] = field(default_factory=dict)
    #: "<client> <op> raw/bus": the repeats' ratios of CPU per message, raw over bus
    #: (so that it too reads "higher is better"), median: the throughput ratio to expect when
    #: the process, not the broker, is the bottleneck
    cpu_ratios: dict[str, float] = field(default_factory=dict)
    #: "<client> <op>" -> median over repeats of (bus - raw+json) CPU us per message
    bus_cost_us: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        return data


# -- one repeat -----------------------------------------------------------------------------------
def _envelope_dict(event: BenchEvent) -> dict[str, Any]:
    """What a raw application would serialize for the same data: the envelope's fields."""
    return {"event_type": event.event_type, "event_id": event.event_id,
            "occurred_at": event.occurred_at.isoformat(), "schema_version": 1,
            "payload": {"note": event.note, "seq": event.seq}}


def _sides(client: str, config: BenchConfig, servers: str, prefix: str, bus: Any,
           registry: EventRegistry, js: JsonLib) -> dict[str, dict[str, Callable[[], Timing]]]:
    """The six measurements of one client in one repeat; each builds its data (outside its
    clock) when called, so only one side's data is alive at a time."""
    n, timeout, settings = config.messages_for(client), config.timeout_s, config.producer_settings
    bus_topic = registry.topic_for(BenchEvent)
    raw_topic, json_topic = f"{prefix}bench.raw", f"{prefix}bench.rawjson"

    def events() -> list[BenchEvent]:
        return [BenchEvent(seq=i) for i in range(1, n + 1)]

    def raw() -> Timing:
        encoded = [registry.encode(e) for e in events()]
        records = [(e.key, e.value, list(e.headers)) for e in encoded]
        return _produce_raw(client, servers, raw_topic, records=records,
                            headers=list(encoded[0].headers), settings=settings)

    def raw_json() -> Timing:
        payloads = [_envelope_dict(e) for e in events()]
        headers = list(registry.encode(BenchEvent(seq=0)).headers)
        return _produce_raw(client, servers, json_topic, payloads=payloads, headers=headers,
                            dumps=js.dumps, settings=settings)

    # the bus topic holds n + 1 events (its warm-up publish): n gaps first to last
    return {
        "publish": {"raw": raw, "raw+json": raw_json, "bus": lambda: produce_bus(bus, events())},
        "consume": {
            "raw": lambda: consume_raw(client, servers, bus_topic, f"{prefix}raw", n + 1,
                                       loads=None, timeout_s=timeout),
            "raw+json": lambda: consume_raw(client, servers, bus_topic, f"{prefix}rawjson",
                                            n + 1, loads=js.loads, timeout_s=timeout),
            "bus": lambda: consume_bus(bus, f"{prefix}bus", n + 1, timeout_s=timeout),
        },
    }


def _one_repeat(config: BenchConfig, broker: Any, run_id: str, r: int, client: str,
                result: BenchResult, js: JsonLib, say: Callable[[str], None]) -> None:
    """One client in one repeat: fresh topics and groups, every side published, then every
    side consumed (even repeats raw first, odd repeats bus first)."""
    from offsetlab.bus import KafkaBus, KafkaBusConfig

    from .raw import create_topic

    n, servers = config.messages_for(client), broker.bootstrap_servers
    tag = "kp" if client == "kafka-python" else "ck"
    prefix = f"{run_id}.{r}.{tag}."
    registry = EventRegistry([BenchEvent], topic_prefix=prefix)
    for topic in (registry.topic_for(BenchEvent), f"{prefix}bench.raw", f"{prefix}bench.rawjson"):
        create_topic(broker, topic, config.partitions)
    bus = KafkaBus(registry, KafkaBusConfig(
        bootstrap_servers=servers, client=client, publish_producer=config.producer_settings,
        publish_timeout_s=config.timeout_s, create_topics=False, name=f"bench-{r}-{tag}"))
    try:
        table = _sides(client, config, servers, prefix, bus, registry, js)
        order = SIDES if r % 2 == 0 else tuple(reversed(SIDES))
        for op in OPS:
            for side in order:
                gc.collect()
                t = table[op][side]()
                rate = n / t.wall_s if t.wall_s > 0 else float("inf")
                cpu_us = t.cpu_s / n * 1e6
                result.measurements.append({
                    "repeat": r, "client": client, "op": op, "side": side, "messages": n,
                    "seconds": round(t.wall_s, 6), "rate": rate, "cpu_s": round(t.cpu_s, 6),
                    "cpu_us_per_message": cpu_us})
                say(f"  repeat {r + 1} {client}: {op} {side:<8} {rate:>10,.0f} msg/s "
                    f"({t.wall_s:.3f} s; {cpu_us:.1f} us CPU/message)")
    finally:
        bus.close()


# -- summary --------------------------------------------------------------------------------------
def _summarize(result: BenchResult, clients: tuple[str, ...]) -> None:
    """Medians, ratios and bus costs, from ``result.measurements``. Ratios and costs pair
    the sides of one repeat (measured within seconds of each other) before taking the
    median: a shared machine's slow minutes then count against both sides of a ratio."""
    rate = {(m["repeat"], m["client"], m["op"], m["side"]): m["rate"]
            for m in result.measurements}
    cpu = {(m["repeat"], m["client"], m["op"], m["side"]): m["cpu_us_per_message"]
           for m in result.measurements}
    repeats = sorted({key[0] for key in rate})
    med = statistics.median
    for client in clients:
        for op in OPS:
            for side in SIDES:
                result.rates[f"{client} {op} {side}"] = med(rate[r, client, op, side]
                                                            for r in repeats)
                result.cpu_us[f"{client} {op} {side}"] = med(cpu[r, client, op, side]
                                                             for r in repeats)
            for base in ("raw", "raw+json"):
                result.ratios[f"{client} {op} bus/{base}"] = med(
                    rate[r, client, op, "bus"] / rate[r, client, op, base] for r in repeats)
            result.cpu_ratios[f"{client} {op} raw/bus"] = med(
                cpu[r, client, op, "raw"] / cpu[r, client, op, "bus"] for r in repeats)
            result.bus_cost_us[f"{client} {op}"] = med(
                cpu[r, client, op, "bus"] - cpu[r, client, op, "raw+json"] for r in repeats)
    if set(CLIENTS) <= set(clients):
        for op in OPS:
            result.ratios[f"bus confluent-kafka/kafka-python {op}"] = med(
                rate[r, "confluent-kafka", op, "bus"] / rate[r, "kafka-python", op, "bus"]
                for r in repeats)


def _report(result: BenchResult, clients: tuple[str, ...], say: Callable[[str], None]) -> None:
    for client in clients:
        for op in OPS:
            for side in SIDES:
                key = f"{client} {op} {side}"
                say(f"{key:<32} {result.rates[key]:>10,.0f} msg/s, "
                    f"{result.cpu_us[key]:.1f} us CPU/message (medians)")
    for client in clients:
        target = f"; {TARGETS['kafka-python ratio']}" if client == "kafka-python" else ""
        for op in OPS:
            say(f"{client} {op} ratio bus/raw: {result.ratios[f'{client} {op} bus/raw']:.3g} "
                f"(throughput; CPU per message raw/bus "
                f"{result.cpu_ratios[f'{client} {op} raw/bus']:.3g}{target})")
        for op in OPS:
            say(f"{client} {op} ratio bus/raw+json: "
                f"{result.ratios[f'{client} {op} bus/raw+json']:.3g} (throughput; context)")
        cost = result.bus_cost_us
        target = f"; {TARGETS['confluent-kafka cost']}" if client == "confluent-kafka" else ""
        say(f"{client} bus cost per message: publish {cost[f'{client} publish']:.1f} us, "
            f"consume {cost[f'{client} consume']:.1f} us (CPU: bus minus raw+json{target})")
    if set(CLIENTS) <= set(clients):
        for op in OPS:
            say(f"bus confluent-kafka/kafka-python {op}: "
                f"{result.ratios[f'bus confluent-kafka/kafka-python {op}']:.3g} "
                f"(bus throughput; {TARGETS['cross']})")


def _versions(clients: tuple[str, ...]) -> dict[str, str]:
    from .suite import versions

    out = versions()
    if "confluent-kafka" in clients:
        import confluent_kafka

        out["confluent-kafka"] = confluent_kafka.version()[0]
        out["librdkafka"] = confluent_kafka.libversion()[0]
    return out


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
    clients = config.clients
    js = json_lib()
    result = BenchResult(run_id=run_id, run_dir=run_dir, versions=_versions(clients), json=js.name,
                         config={k: (str(v) if isinstance(v, Path) else v)
                                 for k, v in asdict(config).items()})

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    result.envelope = envelope_parts(5_000)  # before the broker starts: a quiet machine
    with ExitStack() as stack:
        if broker is None:
            from offsetlab.brokers import start_broker

            settings = {"group.initial.rebalance.delay.ms": 0} if config.broker == "kafka" else None
            broker = stack.enter_context(start_broker(
                config.broker, settings=settings, bootstrap_servers=config.bootstrap_servers))
        servers = broker.bootstrap_servers
        result.broker = {"kind": broker.kind, "version": broker.version,
                         "bootstrap_servers": servers}
        counts = ", ".join(f"{config.messages_for(c)} on {c}" for c in clients)
        say(f"bench run {run_id}: {counts}, x {config.repeat} repeats, {config.partitions} "
            f"partitions, {broker.kind} {broker.version} at {servers}; producer "
            f"{config.producer_settings}; json: {js.name} (bus and raw+json)")
        for line in format_parts(result.envelope):
            say(line)
        if min(config.messages_for(c) for c in clients) < 10 * CONSUMER_BATCH:
            say(f"note: fewer than {10 * CONSUMER_BATCH} messages is a smoke test, not a "
                f"measurement: the consumers fetch up to {CONSUMER_BATCH} records a poll, so a "
                "short consume window is mostly one prefetched batch; use --messages 20000 or "
                "more for numbers")
        for r in range(config.repeat):
            for client in (clients if r % 2 == 0 else tuple(reversed(clients))):
                _one_repeat(config, broker, run_id, r, client, result, js, say)
    _summarize(result, clients)
    _report(result, clients, say)
    (run_dir / "bench.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    say(f"saved: {run_dir / 'bench.json'}")
    return result


# -- CLI ------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``offsetlab bench`` options."""
    d = BenchConfig()
    parser.add_argument("--client", choices=(*CLIENTS, "all"), default=CLIENTS[0],
                        help=f"the client(s) under the bus and the raw sides ({CLIENTS[0]})")
    parser.add_argument("--messages", type=int, default=d.messages,
                        help=f"messages per measurement on kafka-python ({d.messages})")
    parser.add_argument("--confluent-messages", type=int, default=None,
                        help="messages per measurement on confluent-kafka (5 x --messages)")
    parser.add_argument("--repeat", type=int, default=d.repeat,
                        help=f"repeats; rates are medians ({d.repeat})")
    parser.add_argument("--partitions", type=int, default=d.partitions,
                        help=f"partitions of every topic ({d.partitions})")
    parser.add_argument("--linger-ms", type=int, default=d.linger_ms,
                        help=f"every producer's linger_ms ({d.linger_ms})")
    parser.add_argument("--broker", choices=BROKER_KINDS, default=d.broker)
    parser.add_argument("--bootstrap-servers", default=None,
                        help="an external cluster (with --broker external or auto)")
    parser.add_argument("--timeout", type=float, default=d.timeout_s,
                        help=f"seconds one measurement may take ({d.timeout_s:.0f})")
    parser.add_argument("--run-id", default=None, help="default: <UTC time>-bench")


def main(args: argparse.Namespace) -> int:
    """``offsetlab bench``: exit 0 when every measurement ran, 1 when one failed, 2 usage."""
    try:
        config = BenchConfig(clients=CLIENTS if args.client == "all" else (args.client,),
                             messages=args.messages, confluent_messages=args.confluent_messages,
                             repeat=args.repeat, partitions=args.partitions,
                             linger_ms=args.linger_ms, broker=args.broker,
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
