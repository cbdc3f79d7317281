"""E05 in raw kafka-python: the seed's fail03, the main topic as its own retry queue.

:func:`run_fail03` replays it with one raw ``KafkaConsumer`` loop (one partition, keyed
messages ``seq`` 0..n-1, the seed's "message 3" is ``seq`` 2) and a handler whose
dependency fails the first ``failing[seq]`` deliveries of a message (``None``: always).
Knobs, one per thing the seed tried (:class:`Fail03`):

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
and ``consumer#N`` per incarnation) and as one :class:`Delivery` row per delivery; the
committed position is read back from the broker at the end. :func:`attempts`,
:func:`processing_order` and :func:`outcome` turn a :class:`Fail03Run` into findings.
:func:`run_variants` runs several variants at once (own topic and group each).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.errors import ConfigError
from offsetlab.lab.experiments.outage_raw import RETRY_COUNT_HEADER
from offsetlab.lab.experiments.outage_scenario import DependencyDown
from offsetlab.lab.raw import committed_offsets, create_topic, end_offsets, read_topic, unique
from offsetlab.lab.timeline import Timeline, record_consumed, recorded_send

__all__ = ["Commit", "OnExhausted", "Fail03", "Delivery", "Fail03Run", "run_fail03",
           "run_variants", "attempts", "processing_order", "outcome"]


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
    #: read back from the topic after the run: seq -> sorted delivery numbers of its records
    #: (original 1, a copy its ``retry-count`` + 1): the deliveries the broker holds
    deliveries_read: dict[int, list[int]] = field(default_factory=dict)

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame([vars(d) for d in self.deliveries])


class _Crash(Exception):
    """The seed's consumer gives up on a message: it crashes (KafkaJS restarts it)."""


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
        deadline = Deadline(config.timeout_s)
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
                    if deadline.expired():
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
    return Fail03Run(
        config=config, topic=topic, group=group, timeline=timeline, deliveries=deliveries,
        produced=config.n_messages, end_offset=end_offsets(broker, topic)[0],
        committed=committed_offsets(broker, group, topic).get(0), restarts=restarts,
        dead_letters=sorted(int(r.value) for r in read_topic(broker, dlt)),
        first_after_restart=first_after_restart, deliveries_read=_deliveries_read(broker, topic))


def _deliveries_read(broker: BrokerHandle, topic: str) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for record in read_topic(broker, topic):
        raw = dict(record.headers or []).get(RETRY_COUNT_HEADER)
        out.setdefault(int(record.value), []).append(int(raw) + 1 if raw else 1)
    return {seq: sorted(a) for seq, a in sorted(out.items())}


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


# -- reading a run -------------------------------------------------------------------------------
def attempts(run: Fail03Run) -> dict[int, int]:
    """Deliveries per message ``seq`` (sorted by seq) as the handler loop recorded them."""
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
