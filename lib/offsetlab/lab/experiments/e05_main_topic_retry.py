"""E05: the main topic as its own retry queue (the seed's fail03), in raw kafka-python.

The seed's consumer, on a retryable failure, produced the message again to the same topic
and committed; after 5 retries its KafkaJS consumer crashed, stopped, restarted and "picked up
where it left off" -- except that on restart it read the message *before* the failed one
("I may be committing wrong ... I think I need to commit offset + 1"). With the re-produce
commented out, the consumer read the topic to the end and went quiet: the failed message was
gone.

:func:`run_fail03` replays that with one raw ``KafkaConsumer`` loop (one partition, keyed
messages ``seq`` 0..n-1, the seed's "message 3" is ``seq`` 2) and a handler whose
dependency fails the first ``failing[seq]`` deliveries of a message (``None``: always).
Knobs, one per thing the seed tried:

- ``reproduce``: on a failure, produce a copy to the same topic with a ``retry-count``
  header (the seed's fail03) -- or not (the seed's commented-out version);
- ``commit``: ``"offset+1"`` (the next record to read: right) or ``"offset"`` (the record
  just processed: the seed's first attempt);
- ``on_exhausted`` after ``max_retries`` retries: ``"dead-letter"`` (copy to ``<topic>-dlt``,
  commit, go on) or ``"crash"`` (the seed: raise, close without committing, build a new
  consumer in the same group, resume from the committed position; at most ``max_restarts``).

Each consumer *assigns* itself the partition and commits under the run's group id (a restarted
consumer reads the group's committed position, as the seed's did), without group membership:
kafka-python 3.0.12 sometimes rebalances a fresh single-member group right after its first
join, and a commit failed by that rebalance would make runs differ. Membership over time is
E01's and E07's subject.

Everything is recorded on a :class:`~offsetlab.lab.timeline.Timeline` (lanes ``producer``
and ``consumer#N`` per incarnation) and as one row per delivery; the committed position is
read back from the broker at the end. :func:`attempts`, :func:`processing_order` and
:func:`outcome` turn a :class:`Fail03Run` into findings. :func:`run_variants` runs several
variants at once (own topic and group each) to keep the notebook fast.

:func:`run_fail03_bus` asks the same of the adapter: ``KafkaBus`` with a retry strategy
(``MainTopicRetry``: the seed's idea done by the bus -- copy with an ``offsetlab-attempt``
header, acknowledged before the commit of offset + 1, dead-letter topic with provenance after
``max_retries``; E06 passes ``RetryTopicRetry``). Its :class:`BusFail03Run` has the same
``attempts`` / ``processing_order`` / ``outcome`` as the raw run, so the two tabulate side
by side.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from offsetlab.brokers import BrokerHandle
from offsetlab.bus import KafkaBusConfig
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.headers import Provenance, parse_provenance
from offsetlab.bus.interface import Activity, ActivityKind
from offsetlab.bus.kafka_bus import KafkaBus
from offsetlab.bus.retry import RetryStrategy, dead_letter_topic
from offsetlab.lab.experiments.outage import (
    BUS_CONSUMER_SETTINGS,
    RETRY_COUNT_HEADER,
    DependencyDown,
    read_topic,
    warm_subscription,
)
from offsetlab.lab.raw import create_topic, unique
from offsetlab.lab.timeline import Timeline, record_consumed, recorded_send

__all__ = ["Fail03", "Fail03Run", "Delivery", "run_fail03", "run_variants", "attempts",
           "processing_order", "outcome", "Fail03Message", "BusFail03Run", "run_fail03_bus",
           "run_bus_variants"]

Commit = Literal["offset+1", "offset"]
OnExhausted = Literal["dead-letter", "crash"]


@dataclass(frozen=True, kw_only=True)
class Fail03:
    """One variant of the seed's fail03 (see the module docstring)."""

    n_messages: int = 5
    keys: int = 1
    failing: Mapping[int, int | None] = field(default_factory=lambda: {2: 2})
    max_retries: int = 5
    reproduce: bool = True
    commit: Commit = "offset+1"
    on_exhausted: OnExhausted = "dead-letter"
    max_restarts: int = 2
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.commit not in ("offset+1", "offset"):
            raise ConfigError(f"Fail03.commit={self.commit!r}: use 'offset+1' or 'offset'")
        if self.on_exhausted not in ("dead-letter", "crash"):
            raise ConfigError(
                f"Fail03.on_exhausted={self.on_exhausted!r}: use 'dead-letter' or 'crash'")
        for name in ("n_messages", "keys"):
            if getattr(self, name) < 1:
                raise ConfigError(f"Fail03.{name} must be >= 1")
        if self.max_retries < 0 or self.max_restarts < 0:
            raise ConfigError("Fail03.max_retries and max_restarts must be >= 0")
        if self.timeout_s <= 0:
            raise ConfigError("Fail03.timeout_s must be > 0")
        object.__setattr__(self, "failing", dict(self.failing))


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """One record handed to the handler: by which consumer incarnation, where, what."""

    incarnation: int
    offset: int
    seq: int
    retry_count: int
    outcome: str  # processed | reproduced | dead-lettered | lost (failed, committed past) | crash


@dataclass
class Fail03Run:
    config: Fail03
    topic: str
    group: str
    timeline: Timeline
    deliveries: list[Delivery]
    produced: int
    end_offset: int
    committed: int | None
    restarts: int
    dead_letters: list[int]
    #: offset of the first record each restarted incarnation was handed
    first_after_restart: list[int] = field(default_factory=list)

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([vars(d) for d in self.deliveries])


class _Crash(Exception):
    """The seed's consumer gives up on a message: it crashes (KafkaJS restarts it)."""


def _committed(broker: BrokerHandle, group: str, tp: TopicPartition) -> int | None:
    consumer = KafkaConsumer(**broker.clients(group_id=group, enable_auto_commit=False))
    try:
        return consumer.committed(tp)
    finally:
        consumer.close()


def run_fail03(broker: BrokerHandle, config: Fail03) -> Fail03Run:
    """Produce ``n_messages``, then consume them the seed's way until the consumer has read
    to the end of the topic (or crashed ``max_restarts + 1`` times). Re-produced copies are
    acknowledged before the next poll, so once a poll returns nothing at the log end no
    copy is still on its way: the end holds by construction, not by a quiet spell."""
    timeline = Timeline()
    topic = create_topic(broker, unique("e05-fail03"), 1)
    dlt = create_topic(broker, f"{topic}-dlt", 1)
    group = unique("e05-group")
    tp = TopicPartition(topic, 0)
    calls: dict[int, int] = {}
    deliveries: list[Delivery] = []
    first_after_restart: list[int] = []

    def dependency(seq: int) -> None:
        calls[seq] = calls.get(seq, 0) + 1
        fails = config.failing.get(seq, 0)
        if fails is None or calls[seq] <= fails:
            raise DependencyDown(f"dependency down for message {seq} (call {calls[seq]})")

    producer = KafkaProducer(**broker.clients(linger_ms=0))
    try:
        for i in range(config.n_messages):
            recorded_send(producer, timeline, "producer", topic, value=f"{i}".encode(),
                          key=f"key-{i % config.keys}".encode(), detail={"seq": i}).get(timeout=30)
        restarts = 0
        deadline = time.monotonic() + config.timeout_s
        for incarnation in range(config.max_restarts + 1):
            who = f"consumer#{incarnation + 1}"
            consumer = KafkaConsumer(**broker.clients(
                group_id=group, client_id=who, auto_offset_reset="earliest",
                enable_auto_commit=False))
            consumer.assign([tp])  # no group membership: see the module docstring
            crashed = False
            first = True
            try:
                while True:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"fail03 did not reach the end of {topic} within "
                                           f"{config.timeout_s} s")
                    batch = consumer.poll(timeout_ms=100)
                    if not batch and consumer.position(tp) >= consumer.end_offsets([tp])[tp]:
                        break
                    for record in batch.get(tp, []):
                        if first and incarnation:
                            first_after_restart.append(record.offset)
                        first = False
                        seq = int(record.value)
                        raw = dict(record.headers or []).get(RETRY_COUNT_HEADER)
                        retries = int(raw) if raw else 0
                        record_consumed(timeline, who, record,
                                        detail={"seq": seq, "retry_count": retries})
                        outcome = _handle(config, dependency, producer, timeline, who, record,
                                          seq, retries, dlt)
                        deliveries.append(Delivery(incarnation=incarnation + 1, offset=record.offset,
                                                   seq=seq, retry_count=retries, outcome=outcome))
                        if outcome == "crash":
                            raise _Crash(f"message {seq} failed after {retries} retries")
                        position = record.offset + 1 if config.commit == "offset+1" else record.offset
                        consumer.commit({tp: OffsetAndMetadata(position, "", -1)})
                        timeline.record(who, "commit", topic=topic, partition=0, offset=position)
            except _Crash as exc:
                crashed = True
                timeline.record(who, "crash", topic=topic, detail={"error": str(exc)})
            finally:
                consumer.close(autocommit=False)
            if not crashed:
                break
            if incarnation < config.max_restarts:
                restarts += 1
    finally:
        producer.close()
    end_offset = _end_offset(broker, tp)
    return Fail03Run(
        config=config, topic=topic, group=group, timeline=timeline, deliveries=deliveries,
        produced=config.n_messages, end_offset=end_offset,
        committed=_committed(broker, group, tp), restarts=restarts,
        dead_letters=sorted(int(r.value) for r in read_topic(broker, dlt)),
        first_after_restart=first_after_restart)


def run_variants(broker: BrokerHandle, variants: Mapping[str, Fail03]) -> dict[str, Fail03Run]:
    """Run several variants at once (each on its own topic and group), one thread each."""
    with ThreadPoolExecutor(max_workers=len(variants) or 1, thread_name_prefix="fail03") as pool:
        futures = {name: pool.submit(run_fail03, broker, cfg) for name, cfg in variants.items()}
        return {name: future.result() for name, future in futures.items()}


def _handle(config: Fail03, dependency: Any, producer: KafkaProducer, timeline: Timeline,
            who: str, record: Any, seq: int, retries: int, dlt: str) -> str:
    try:
        dependency(seq)
    except DependencyDown as exc:
        timeline.record(who, "failed", key=record.key, detail={"seq": seq, "error": str(exc)})
        if retries >= config.max_retries:
            if config.on_exhausted == "crash":
                return "crash"
            recorded_send(producer, timeline, who, dlt, value=record.value, key=record.key,
                          headers=[(RETRY_COUNT_HEADER, str(retries).encode())],
                          detail={"seq": seq}).get(timeout=30)
            return "dead-lettered"
        if not config.reproduce:
            return "lost"
        recorded_send(producer, timeline, who, record.topic, value=record.value, key=record.key,
                      headers=[(RETRY_COUNT_HEADER, str(retries + 1).encode())],
                      detail={"seq": seq, "retry_count": retries + 1}).get(timeout=30)
        return "reproduced"
    timeline.record(who, "processed", key=record.key, detail={"seq": seq})
    return "processed"


def _end_offset(broker: BrokerHandle, tp: TopicPartition) -> int:
    consumer = KafkaConsumer(**broker.clients(enable_auto_commit=False))
    try:
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


# -- reading a run -------------------------------------------------------------------------------
def attempts(run: Fail03Run) -> dict[int, int]:
    """Deliveries per message ``seq`` (sorted by seq)."""
    counts: dict[int, int] = {}
    for d in run.deliveries:
        counts[d.seq] = counts.get(d.seq, 0) + 1
    return dict(sorted(counts.items()))


def processing_order(run: Fail03Run) -> list[int]:
    """``seq`` of every successful processing, in the order it happened (repeats included)."""
    return [d.seq for d in run.deliveries if d.outcome == "processed"]


def outcome(run: Fail03Run) -> dict[str, Any]:
    """Per run: what was processed, lost, duplicated, dead-lettered; where the group stands."""
    processed = processing_order(run)
    done = set(processed) | set(run.dead_letters)
    return {
        "processed once": sorted(s for s in set(processed) if processed.count(s) == 1),
        "duplicated": sorted(s for s in set(processed) if processed.count(s) > 1),
        "lost": sorted(set(range(run.produced)) - done),
        "dead-lettered": run.dead_letters,
        "restarts": run.restarts,
        "order kept": processed == sorted(processed),
        "committed == end of topic": run.committed == run.end_offset,
    }


# -- the same with the adapter ------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Fail03Message(Event):
    """fail03's message as an event of the adapter: its ``seq`` and key."""

    topic: ClassVar[str] = "fail03"
    seq: int
    message_key: str

    @property
    def key(self) -> str:
        return self.message_key


@dataclass
class BusFail03Run:
    """fail03 on ``KafkaBus``: every handler call in order, dead letters and commits read
    back from the broker."""

    strategy: str
    topic: str
    group: str
    produced: int
    #: (seq, handler call number for that seq, "processed" | "failed"), in call order
    calls: list[tuple[int, int, str]]
    #: per dead letter: seq and its decoded provenance headers
    dead_letters: list[tuple[int, Provenance]]
    #: committed position and end offset per topic the group consumed
    committed: dict[str, int | None]
    end_offsets: dict[str, int]
    finished: bool
    activity: list[Activity] = field(default_factory=list)

    def attempts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for seq, _, _ in self.calls:
            counts[seq] = counts.get(seq, 0) + 1
        return dict(sorted(counts.items()))

    def processing_order(self) -> list[int]:
        return [seq for seq, _, what in self.calls if what == "processed"]

    def outcome(self) -> dict[str, Any]:
        processed = self.processing_order()
        dead = sorted(seq for seq, _ in self.dead_letters)
        return {
            "processed once": sorted(s for s in set(processed) if processed.count(s) == 1),
            "duplicated": sorted(s for s in set(processed) if processed.count(s) > 1),
            "lost": sorted(set(range(self.produced)) - set(processed) - set(dead)),
            "dead-lettered": dead,
            "restarts": 0,
            "order kept": processed == sorted(processed),
            "committed == end of topic": all(self.committed.get(t) == end
                                             for t, end in self.end_offsets.items()),
        }


def run_fail03_bus(broker: BrokerHandle, retry: RetryStrategy, *, n_messages: int = 5,
                   keys: int = 1, failing: Mapping[int, int | None] | None = None,
                   timeout_s: float = 30.0) -> BusFail03Run:
    """fail03 with ``KafkaBus`` and ``retry`` (MainTopicRetry for E05, RetryTopicRetry for
    E06): the handler raises :class:`DependencyDown` (retriable) for the first
    ``failing[seq]`` calls of a message (``None``: always). Waits until every message was
    processed or dead-lettered (or ``timeout_s``), closes the bus (final commit), then reads
    the dead-letter topic and the group's committed positions back from the broker."""
    failing = dict({2: 2} if failing is None else failing)
    registry = EventRegistry([Fail03Message], topic_prefix=unique("e05-bus") + ".")
    topic = create_topic(broker, registry.topic_for(Fail03Message), 1)
    group = unique("e05-bus-group")
    calls: list[tuple[int, int, str]] = []
    count: dict[int, int] = {}
    dead_ids: set[str] = set()
    lock = threading.Lock()

    def handler(event: Event) -> None:
        assert isinstance(event, Fail03Message)
        with lock:
            count[event.seq] = count.get(event.seq, 0) + 1
            n = count[event.seq]
        fails = failing.get(event.seq, 0)
        if fails is None or n <= fails:
            calls.append((event.seq, n, "failed"))
            raise DependencyDown(f"dependency down for message {event.seq} (call {n})")
        calls.append((event.seq, n, "processed"))

    def on_activity(activity: Activity) -> None:
        if activity.kind is ActivityKind.DEAD_LETTERED and activity.event_id:
            with lock:
                dead_ids.add(activity.event_id)

    config = KafkaBusConfig(bootstrap_servers=broker.bootstrap_servers, name=group,
                            client_settings=dict(broker.client_config), keep_activity=True,
                            consumer_settings=BUS_CONSUMER_SETTINGS)
    events = [Fail03Message(seq=i, message_key=f"key-{i % keys}") for i in range(n_messages)]
    with KafkaBus(registry, config) as bus:
        bus.add_listener(on_activity)
        sub = bus.subscribe(Fail03Message, handler, group=group, retry=retry)
        warm_subscription(sub)
        sub.run(timeout=30)
        bus.publish_many(events)  # sent together: all in the log before the first copy
        ids = {e.event_id: e.seq for e in events}
        deadline = time.monotonic() + timeout_s
        finished = False
        while time.monotonic() < deadline:
            with lock:
                done = {s for s, _, what in calls if what == "processed"}
                done |= {ids[i] for i in dead_ids if i in ids}
            if len(done) == n_messages:
                finished = True
                break
            time.sleep(0.05)
        activity = list(bus.activity)
    topics = list(sub.spec.topics)
    dlt = dead_letter_topic(topic, retry.dead_letter_suffix)
    dead = []
    for record in read_topic(broker, dlt):
        event = registry.decode(record.value)
        assert isinstance(event, Fail03Message)
        dead.append((event.seq, parse_provenance(record.headers or [])))
    return BusFail03Run(strategy=type(retry).__name__, topic=topic, group=group,
                        produced=n_messages, calls=calls, dead_letters=dead,
                        committed=_group_offsets(broker, group, topics),
                        end_offsets={t: _end_offset(broker, TopicPartition(t, 0)) for t in topics},
                        finished=finished, activity=activity)


def _group_offsets(broker: BrokerHandle, group: str, topics: list[str]) -> dict[str, int | None]:
    """The group's committed position on partition 0 of each topic (None: nothing committed)."""
    return {t: _committed(broker, group, TopicPartition(t, 0)) for t in topics}


def run_bus_variants(broker: BrokerHandle,
                     variants: Mapping[str, tuple[RetryStrategy, Mapping[int, int | None]]],
                     *, n_messages: int = 5, keys: int = 1) -> dict[str, BusFail03Run]:
    """:func:`run_fail03_bus` for several ``name -> (retry, failing)`` at once."""
    with ThreadPoolExecutor(max_workers=len(variants) or 1, thread_name_prefix="fail03-bus") as pool:
        futures = {name: pool.submit(run_fail03_bus, broker, retry, failing=failing,
                                     n_messages=n_messages, keys=keys)
                   for name, (retry, failing) in variants.items()}
        return {name: future.result() for name, future in futures.items()}


# -- findings ----------------------------------------------------------------------------------
def findings(raw: Mapping[str, Fail03Run], bus: Mapping[str, BusFail03Run], summary: Any, *,
             max_retries: int) -> dict[str, Any]:
    """E05's deterministic findings, from the runs of the notebook (names as it uses them).

    ``raw``: :func:`run_variants` with ``transient``, ``poison``, ``no re-produce``,
    ``crash, offset+1``, ``crash, offset``; ``bus``: :func:`run_bus_variants` with
    ``bus transient`` and ``bus poison``; ``summary``: :func:`outage.summarize` of a run with
    pipelines ``seed-reproduce``, ``seed-sleep``, ``bus-main-topic``, ``bus-retry-topic``.
    Timing-dependent numbers become threshold comparisons.
    """
    out: dict[str, Any] = {}
    t, p = raw["transient"], raw["poison"]
    out["raw transient: deliveries per message"] = attempts(t)
    out["raw transient: processing order"] = processing_order(t)
    out["raw poison: deliveries of message 2 == max_retries + 1"] = attempts(p)[2] == max_retries + 1
    out["raw poison: dead-lettered"] = p.dead_letters
    out["raw no re-produce: lost"] = outcome(raw["no re-produce"])["lost"]
    for name in ("crash, offset+1", "crash, offset"):
        r = raw[name]
        crashed = [d.offset for d in r.deliveries if d.outcome == "crash"]
        first = r.first_after_restart[:1]
        out[f"raw {name}: restart began at [the crashed record, the one before]"] = [
            bool(first and crashed and first[0] == crashed[0]),
            bool(first and crashed and first[0] == crashed[0] - 1)]
        o = outcome(r)
        out[f"raw {name}: [lost, duplicated]"] = [o["lost"], o["duplicated"]]
        out[f"raw {name}: committed == end of topic"] = o["committed == end of topic"]
    for name, b in bus.items():
        o = b.outcome()
        out[f"{name}: deliveries per message"] = b.attempts()
        out[f"{name}: [lost, duplicated, dead-lettered]"] = [o["lost"], o["duplicated"],
                                                           o["dead-lettered"]]
        out[f"{name}: committed == end of topic"] = o["committed == end of topic"]
    out["bus poison: dead letter [attempt header, original offset]"] = [
        [prov.attempt, prov.original_offset] for _, prov in bus["bus poison"].dead_letters]
    s = summary
    out["outage: every pipeline processed or dead-lettered every item"] = bool(s["finished"].all())
    out["outage: lost per pipeline"] = {k: int(v) for k, v in s["lost"].items()}
    out["outage: duplicated per pipeline"] = {k: int(v) for k, v in s["duplicated"].items()}
    out["outage: seed-reproduce dead-lettered items that only met the outage >= 1"] = bool(
        s["dead_lettered"]["seed-reproduce"] >= 1)
    out["outage: seed-reproduce max deliveries == max_retries + 1"] = bool(
        s["max_attempts"]["seed-reproduce"] == max_retries + 1)
    out["outage: bus-main-topic dead-lettered"] = int(s["dead_lettered"]["bus-main-topic"])
    out["outage: bus subscriptions' rebalances while producing"] = {
        k: int(v) for k, v in s["rebalances"].items() if k.startswith("bus-")}
    ratio = s["healthy_in_outage"]["bus-retry-topic"] / s["healthy_in_outage"]["bus-main-topic"]
    out["outage: healthy throughput during it, retry topic / main topic >= 1.25"] = bool(ratio >= 1.25)
    out["outage: longest healthy-key stall, main topic >= 2 x retry topic"] = bool(
        s["healthy_stall_max_s"]["bus-main-topic"] >= 2 * s["healthy_stall_max_s"]["bus-retry-topic"])
    out["outage: seed-sleep longest healthy-key stall >= 1 s"] = bool(
        s["healthy_stall_max_s"]["seed-sleep"] >= 1.0)
    out["outage: retry topic processed some key out of order"] = bool(
        s["keys_out_of_order"]["bus-retry-topic"] >= 1)
    return out
