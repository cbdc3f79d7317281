"""The outage E05 and E06 share: a dependency down for a while, healthy keys still arriving.

One producer sends the same schedule of work items to the main topic of every *pipeline*
(one retry strategy each) at ``rate_per_s``; every ``dependent_every``-th key needs a
dependency, the others (the *healthy keys*) need nothing. The dependency is down from
``outage_start_s`` for ``outage_s`` seconds after the first send. All pipelines run at the
same time, against the same broker and the same outage, so they share one time axis.

Pipelines (each on its own topics and consumer group):

- :class:`RawMainTopicPipeline` -- the seed's fail03 in raw kafka-python: on a failure,
  re-produce the record to its own topic with a ``retry-count`` header and commit
  offset + 1; after ``max_retries`` retries, the dead-letter topic. With ``sleep`` (a
  :class:`~offsetlab.bus.retry.Backoff`) the handler sleeps before re-producing (the seed's
  KafkaJS retry delay, spent inside the handler: the partition waits with it).
- :class:`RawRetryTopicPipeline` -- E06 in raw kafka-python: a failure goes to
  ``<topic>-retry`` with provenance headers (:mod:`offsetlab.bus.headers`: original topic,
  partition, offset, attempt, error, not-before); a separate *retrier* consumer leaves the
  records there (partition paused, still polling) until they are due *and* the dependency
  answers its health probe, then processes them; the dead-letter topic after the last attempt.
- :class:`BusPipeline` -- the adapter: ``KafkaBus`` with a retry strategy
  (``MainTopicRetry`` for E05, ``RetryTopicRetry`` for E06); see ``offsetlab.bus.kafka_bus``.

The handler is the same for all (:meth:`OutageRun.handler_for`): it records a ``processed``
row (or ``failed`` when the dependency refused) on the run's :class:`Timeline` with the item's
``seq`` and the delivery ``attempt``. :func:`run_outage` drives it and reads the dead-letter
topics back from the broker; :func:`summarize` and :func:`throughput` turn the run into what
the notebooks compare: healthy-key throughput during the outage, latency of retried items,
per-key order, attempts, lost and duplicated items.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.events import Event
from offsetlab.bus.headers import SourceRecord, attempt_of, failure_headers, not_before_of
from offsetlab.bus.retry import Backoff
from offsetlab.lab.raw import create_topic, read_topic, unique
from offsetlab.lab.timeline import Timeline

log = logging.getLogger(__name__)

__all__ = [
    "DependencyDown",
    "Dependency",
    "WorkItem",
    "OutageWork",
    "OutageConfig",
    "OutageRun",
    "Pipeline",
    "RawMainTopicPipeline",
    "RawRetryTopicPipeline",
    "BusPipeline",
    "warm_subscription",
    "run_outage",
    "read_topic",
    "summarize",
    "throughput",
    "plot_outage",
    "RETRY_COUNT_HEADER",
    "BUS_CONSUMER_SETTINGS",
]

#: the seed's raw retry counter: an ASCII integer, 0 (absent) for the first delivery
RETRY_COUNT_HEADER = "retry-count"

#: consumer settings of the bus subscriptions here: a short session so that a broker whose
#: first group join waits on the session timeout (Tansu waits about half of it) joins in
#: seconds; heartbeats well inside it
BUS_CONSUMER_SETTINGS: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1500}


class DependencyDown(ConnectionError):
    """The dependency refused the call: it is down (retriable: a ``ConnectionError``)."""


class Dependency:
    """A dependency that is down between two ``time.monotonic()`` instants.

    ``call()`` raises :class:`DependencyDown` while down; ``healthy()`` is its health probe
    (what E06's retrier checks before it processes anything)."""

    def __init__(self) -> None:
        self.down_from = float("inf")
        self.down_until = float("inf")
        self.calls = 0
        self.refused = 0
        self._lock = threading.Lock()

    def schedule(self, down_from: float, down_until: float) -> None:
        self.down_from, self.down_until = down_from, down_until

    def healthy(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return not (self.down_from <= now < self.down_until)

    def call(self) -> None:
        with self._lock:
            self.calls += 1
            if not self.healthy():
                self.refused += 1
                raise DependencyDown("dependency down (connection refused)")


@dataclass(frozen=True, kw_only=True)
class WorkItem:
    """One unit of work: ``seq`` (0, 1, ... in production order), its ``key``, and whether
    handling it calls the dependency."""

    seq: int
    key: str
    needs_dependency: bool

    def to_bytes(self) -> bytes:
        return json.dumps({"seq": self.seq, "key": self.key,
                           "needs_dependency": self.needs_dependency}).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> WorkItem:
        d = json.loads(raw)
        return cls(seq=int(d["seq"]), key=str(d["key"]), needs_dependency=bool(d["needs_dependency"]))


@dataclass(frozen=True, kw_only=True)
class OutageWork(Event):
    """A :class:`WorkItem` as an event of the adapter (for :class:`BusPipeline`)."""

    topic: ClassVar[str] = "outage-work"
    seq: int
    work_key: str
    needs_dependency: bool

    @property
    def key(self) -> str:
        return self.work_key

    def item(self) -> WorkItem:
        return WorkItem(seq=self.seq, key=self.work_key, needs_dependency=self.needs_dependency)


@dataclass(frozen=True, kw_only=True)
class OutageConfig:
    """The outage scenario. Times are seconds after the first send.

    - ``duration_s``, ``rate_per_s``: how long and how fast the producer sends;
    - ``keys``: distinct keys, round robin (``key-0`` ...); ``dependent_every``: every n-th
      key needs the dependency (``key-0``, ``key-n``, ...); the rest are healthy keys;
    - ``outage_start_s``, ``outage_s``: when the dependency goes down and for how long;
    - ``drain_timeout_s``: after the last send, how long to wait for every item to be
      processed or dead-lettered;
    - ``partitions``: of every main topic (1: one key's retries can block every key).
    """

    duration_s: float = 8.0
    rate_per_s: float = 10.0
    keys: int = 4
    dependent_every: int = 4
    outage_start_s: float = 2.0
    outage_s: float = 4.0
    drain_timeout_s: float = 15.0
    partitions: int = 1

    def __post_init__(self) -> None:
        for name in ("duration_s", "rate_per_s", "drain_timeout_s", "outage_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"OutageConfig.{name}={value!r} must be a number > 0")
        if not isinstance(self.outage_start_s, int | float) or self.outage_start_s < 0:
            raise ConfigError(f"OutageConfig.outage_start_s={self.outage_start_s!r} must be >= 0")
        if self.outage_start_s + self.outage_s > self.duration_s:
            raise ConfigError(
                f"OutageConfig: the outage ({self.outage_start_s} s + {self.outage_s} s) must end "
                f"before the producer does (duration_s={self.duration_s}); raise duration_s")
        for name in ("keys", "dependent_every", "partitions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"OutageConfig.{name}={value!r} must be an int >= 1")

    def items(self) -> list[WorkItem]:
        n = max(1, round(self.duration_s * self.rate_per_s))
        return [WorkItem(seq=i, key=f"key-{i % self.keys}",
                         needs_dependency=(i % self.keys) % self.dependent_every == 0)
                for i in range(n)]


ProcessFn = Callable[[WorkItem, int], None]
DeadLetterFn = Callable[[int], None]


class Pipeline(Protocol):
    """One retry strategy under test. ``start`` returns once its consumers joined."""

    name: str
    main_topic: str
    dead_letter_topic: str

    def encode(self, item: WorkItem) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """(key, value, headers) to produce for ``item`` on :attr:`main_topic`."""

    def start(self, process: ProcessFn, on_dead_letter: DeadLetterFn) -> None: ...

    def stop(self) -> None: ...

    def decode_dead_letter(self, value: bytes) -> int:
        """The ``seq`` of a record read back from :attr:`dead_letter_topic`."""


# -- raw kafka-python ----------------------------------------------------------------------
class _Loop:
    """A raw KafkaConsumer polled on its own thread; ``on_records(consumer, records)``.

    It *assigns* itself every partition of ``topic`` and commits under ``group`` (kafka-python
    reads the group's committed offsets when it starts): no group membership, so no
    rebalance can make a run hand out different records (kafka-python 3.0.12 sometimes
    rebalances a fresh single-member group right after its first join, when the metadata of a
    just-created topic arrives; a commit then fails). Membership is E01's and E07's subject.
    """

    def __init__(self, broker: BrokerHandle, topic: str, group: str, name: str,
                 on_records: Callable[[KafkaConsumer, list[Any]], None],
                 on_idle: Callable[[KafkaConsumer], None] | None = None) -> None:
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._on_records, self._on_idle = on_records, on_idle
        self._consumer = KafkaConsumer(**broker.clients(
            group_id=group, client_id=name, auto_offset_reset="earliest",
            enable_auto_commit=False))
        partitions = sorted(self._consumer.partitions_for_topic(topic) or ())
        if not partitions:
            self._consumer.close()
            raise TimeoutError(f"{name}: topic {topic} has no partitions; create it first")
        self._consumer.assign([TopicPartition(topic, p) for p in partitions])
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self._consumer.poll(timeout_ms=50)
                for records in batch.values():
                    self._on_records(self._consumer, records)
                if self._on_idle is not None:
                    self._on_idle(self._consumer)
        except BaseException as exc:  # noqa: BLE001 - surfaced by wait_joined/stop
            self.error = exc
            log.exception("outage consumer loop failed")
        finally:
            self._consumer.close()

    def wait_joined(self, timeout_s: float = 30.0) -> None:
        """Raise the loop's error if it already failed (assignment itself is immediate)."""
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _commit_next(consumer: KafkaConsumer, record: Any) -> None:
    tp = TopicPartition(record.topic, record.partition)
    consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})


class RawMainTopicPipeline:
    """The seed's fail03: re-produce to the same topic with a retry count, commit offset + 1."""

    def __init__(self, broker: BrokerHandle, name: str, *, max_retries: int = 5,
                 sleep: Backoff | None = None, partitions: int = 1) -> None:
        self.name = name
        self.broker = broker
        self.max_retries = max_retries
        self.sleep = sleep
        self.main_topic = create_topic(broker, unique(f"{name}"), partitions)
        self.dead_letter_topic = create_topic(broker, f"{self.main_topic}-dlt", 1)
        self._loop: _Loop | None = None
        self._producer: KafkaProducer | None = None

    def encode(self, item: WorkItem) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        return item.key.encode(), item.to_bytes(), []

    def decode_dead_letter(self, value: bytes) -> int:
        return WorkItem.from_bytes(value).seq

    def start(self, process: ProcessFn, on_dead_letter: DeadLetterFn) -> None:
        self._producer = producer = KafkaProducer(**self.broker.clients())

        def on_records(consumer: KafkaConsumer, records: list[Any]) -> None:
            for record in records:
                item = WorkItem.from_bytes(record.value)
                raw = dict(record.headers or []).get(RETRY_COUNT_HEADER)
                retries = int(raw) if raw else 0
                try:
                    process(item, retries + 1)
                except ConnectionError:
                    if self.sleep is not None:  # the seed's retry delay, spent in the handler
                        time.sleep(self.sleep.delay_for(retries + 1))
                    if retries < self.max_retries:
                        producer.send(self.main_topic, key=record.key, value=record.value,
                                      headers=[(RETRY_COUNT_HEADER, str(retries + 1).encode())]
                                      ).get(timeout=30)
                    else:
                        producer.send(self.dead_letter_topic, key=record.key, value=record.value,
                                      headers=[(RETRY_COUNT_HEADER, str(retries).encode())]
                                      ).get(timeout=30)
                        on_dead_letter(item.seq)
                _commit_next(consumer, record)

        self._loop = _Loop(self.broker, self.main_topic, unique(self.name), self.name, on_records)
        self._loop.wait_joined()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
        if self._producer is not None:
            self._producer.close()


class RawRetryTopicPipeline:
    """E06 raw: failures to a retry topic; a retrier that waits for due time and health.

    ``mode="process"``: the retrier handles a due record itself; ``"move-back"``: it produces
    the record (headers and attempt kept) back to the main topic, where the main consumer
    handles it (the seed's "moves messages back to the main topic"): the retried record then
    queues behind the main topic's backlog, but only one consumer runs the handler."""

    def __init__(self, broker: BrokerHandle, name: str, dependency: Dependency, *,
                 max_retries: int = 5, backoff: Backoff | None = None, partitions: int = 1,
                 mode: str = "process") -> None:
        if mode not in ("process", "move-back"):
            raise ConfigError(f"RawRetryTopicPipeline(mode={mode!r}): use 'process' (the retrier "
                              "handles due records) or 'move-back' (it re-produces them to the "
                              "main topic)")
        self.name = name
        self.broker = broker
        self.mode = mode
        self.dependency = dependency
        self.max_retries = max_retries
        self.backoff = backoff or Backoff()
        self.main_topic = create_topic(broker, unique(f"{name}"), partitions)
        self.retry_topic = create_topic(broker, f"{self.main_topic}-retry", 1)
        self.dead_letter_topic = create_topic(broker, f"{self.main_topic}-dlt", 1)
        self.group = unique(name)
        self._loops: list[_Loop] = []
        self._producer: KafkaProducer | None = None
        #: (partition, offset) the retrier is waiting on, and since when (monotonic)

    def encode(self, item: WorkItem) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        return item.key.encode(), item.to_bytes(), []

    def decode_dead_letter(self, value: bytes) -> int:
        return WorkItem.from_bytes(value).seq

    def _copy(self, record: Any, *, topic: str, attempt: int, error: BaseException,
              reason: str, not_before: float | None) -> None:
        assert self._producer is not None
        headers = failure_headers(list(record.headers or []), source=SourceRecord.of(record),
                                  group=self.group, attempt=attempt, reason=reason, error=error,
                                  not_before=not_before)
        self._producer.send(topic, key=record.key, value=record.value,
                            headers=list(headers)).get(timeout=30)

    def start(self, process: ProcessFn, on_dead_letter: DeadLetterFn) -> None:
        self._producer = KafkaProducer(**self.broker.clients())
        # fetch the copies' topics' metadata now: a first send() otherwise waits for it
        # before stamping the record, eating into the not-before delay the copy carries
        for topic in (self.retry_topic, self.dead_letter_topic):
            self._producer.partitions_for(topic)

        def attempt_once(record: Any, item: WorkItem, attempt: int) -> None:
            """Process; on a failure make the next retry copy, or the dead letter."""
            try:
                process(item, attempt)
            except ConnectionError as exc:
                if attempt <= self.max_retries:
                    self._copy(record, topic=self.retry_topic, attempt=attempt + 1, error=exc,
                               reason=f"retry: {exc}",
                               not_before=time.time() + self.backoff.delay_for(attempt))
                else:
                    self._copy(record, topic=self.dead_letter_topic, attempt=attempt,
                               error=exc, reason="retries exhausted", not_before=None)
                    on_dead_letter(item.seq)

        def on_main(consumer: KafkaConsumer, records: list[Any]) -> None:
            for record in records:
                # a record moved back by the retrier carries its attempt; an original is 1
                attempt_once(record, WorkItem.from_bytes(record.value),
                             attempt_of(record.headers or []))
                _commit_next(consumer, record)

        waiting: dict[TopicPartition, float] = {}  # paused retry partition -> not-before (epoch)

        def on_retry(consumer: KafkaConsumer, records: list[Any]) -> None:
            for record in records:
                tp = TopicPartition(record.topic, record.partition)
                if tp in waiting:
                    continue  # rest of a batch of a partition we just paused
                due = not_before_of(record.headers or []) or 0.0
                if time.time() < due or not self.dependency.healthy():
                    consumer.seek(tp, record.offset)  # leave it there, keep polling
                    consumer.pause(tp)
                    waiting[tp] = due
                    continue
                if self.mode == "move-back":  # the seed: "moves messages back to the main topic"
                    assert self._producer is not None
                    self._producer.send(self.main_topic, key=record.key, value=record.value,
                                        headers=list(record.headers or [])).get(timeout=30)
                else:
                    attempt_once(record, WorkItem.from_bytes(record.value),
                                 attempt_of(record.headers or []))
                _commit_next(consumer, record)

        def retry_idle(consumer: KafkaConsumer) -> None:
            # the retrier's health probe: resume once the record is due and the dependency answers
            for tp, due in list(waiting.items()):
                if time.time() >= due and self.dependency.healthy():
                    del waiting[tp]
                    consumer.resume(tp)

        self._loops = [
            _Loop(self.broker, self.main_topic, self.group, f"{self.name}-main", on_main),
            _Loop(self.broker, self.retry_topic, f"{self.group}-retrier", f"{self.name}-retrier",
                  on_retry, retry_idle),
        ]
        for loop in self._loops:
            loop.wait_joined()

    def stop(self) -> None:
        for loop in self._loops:
            loop.stop()
        if self._producer is not None:
            self._producer.close()


# -- the adapter ---------------------------------------------------------------------------
def warm_subscription(sub: Any) -> None:
    """Make a ``KafkaSubscription`` (before ``start``/``run``) build consumers that know its
    topics' partitions before they join.

    Without it the first JoinGroup can race kafka-python's first metadata fetch: the leader
    assigns nothing (``No partition metadata for topic``), rejoins when the metadata arrives,
    and that rejoin sometimes never completes its SyncGroup (kafka-python 3.0.12; seen here,
    in E01 and E03): the subscription then sits without partitions. ``KafkaBus`` takes no
    consumer factory, so this sets the subscription's (a private attribute, checked). Warm
    metadata alone is not enough: the coordinator's metadata *snapshot* must include the
    topics when the leader assigns, or the next metadata update triggers that rejoin.
    """
    if not hasattr(sub, "_consumer_factory"):
        raise AttributeError(f"{sub!r} has no consumer factory to warm; KafkaSubscription changed")
    topics = tuple(sub.spec.topics)

    def make(**kwargs: Any) -> KafkaConsumer:
        consumer = KafkaConsumer(**kwargs)
        try:
            for topic in topics:
                consumer.partitions_for_topic(topic)
        except BaseException:
            consumer.close(autocommit=False)
            raise
        subscribe = consumer.subscribe

        def subscribe_with_snapshot(*args: Any, **kw: Any) -> Any:
            result = subscribe(*args, **kw)
            # The coordinator compares the metadata it assigned with against later metadata
            # and rejoins on a difference; its snapshot is otherwise only refreshed when the
            # next metadata response arrives, which can be after the first assignment (an
            # empty snapshot, then a rejoin). Refresh it now from the warm cluster metadata.
            coordinator = getattr(consumer, "_coordinator", None)
            update = getattr(coordinator, "_handle_metadata_update", None)
            if update is not None:
                update(consumer._client.cluster)
            return result

        consumer.subscribe = subscribe_with_snapshot  # type: ignore[method-assign]
        return consumer

    sub._consumer_factory = make


class BusPipeline:
    """``KafkaBus`` with one retry strategy; the handler is the run's (see module docstring)."""

    def __init__(self, broker: BrokerHandle, name: str, retry: Any, *, partitions: int = 1,
                 consumer_settings: dict[str, Any] | None = None) -> None:
        from offsetlab.bus import EventRegistry

        self.name = name
        self.broker = broker
        self.retry = retry
        self.registry = EventRegistry([OutageWork], topic_prefix=unique(name) + ".")
        # the main topic is made here (its partitions); the bus makes its retry and
        # dead-letter topics at start, with the main topic's partition count
        self.main_topic = create_topic(broker, self.registry.topic_for(OutageWork), partitions)
        self.dead_letter_topic = f"{self.main_topic}{retry.dead_letter_suffix}"
        self.consumer_settings = consumer_settings or {}
        #: set by :func:`run_outage`: where membership and pauses are recorded
        self.timeline: Timeline | None = None
        self._bus: Any = None
        self._sub: Any = None

    def encode(self, item: WorkItem) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        encoded = self.registry.encode(OutageWork(seq=item.seq, work_key=item.key,
                                                  needs_dependency=item.needs_dependency))
        return encoded.key or b"", encoded.value, list(encoded.headers)

    def decode_dead_letter(self, value: bytes) -> int:
        event = self.registry.decode(value)
        assert isinstance(event, OutageWork)
        return event.seq

    def start(self, process: ProcessFn, on_dead_letter: DeadLetterFn) -> None:
        from offsetlab.bus import ActivityKind, KafkaBus, KafkaBusConfig

        attempts: dict[str, int] = {}  # event_id -> handler calls so far
        seqs: dict[str, int] = {}

        def handler(event: Event) -> None:
            assert isinstance(event, OutageWork)
            attempts[event.event_id] = attempts.get(event.event_id, 0) + 1
            seqs[event.event_id] = event.seq
            process(event.item(), attempts[event.event_id])

        timeline = self.timeline

        def on_activity(activity: Any) -> None:
            if activity.kind is ActivityKind.DEAD_LETTERED and activity.event_id in seqs:
                on_dead_letter(seqs[activity.event_id])
            if timeline is None:
                return
            # membership (lane "<name>-group") and not-before waits, one lane per paused
            # topic ("<name> waits on main|retry topic"), on the run's timeline
            lane = f"{self.name}-group"
            if activity.kind is ActivityKind.JOINED:
                timeline.record(lane, "join", detail=activity.detail)
            elif activity.kind is ActivityKind.REBALANCED:
                timeline.record(lane, activity.detail.split(" ", 1)[0], detail=activity.detail)
            elif activity.kind in (ActivityKind.WAITING, ActivityKind.RESUMED) and activity.topic:
                which = "main" if activity.topic == self.main_topic else "retry"
                timeline.record(f"{self.name} waits on {which} topic", "pause",
                                phase="start" if activity.kind is ActivityKind.WAITING else "end",
                                topic=activity.topic, partition=activity.partition)

        config = KafkaBusConfig(
            bootstrap_servers=self.broker.bootstrap_servers, name=self.name,
            client_settings=dict(self.broker.client_config),
            consumer_settings={**BUS_CONSUMER_SETTINGS, **self.consumer_settings})
        self._bus = KafkaBus(self.registry, config)
        self._bus.add_listener(on_activity)
        self._sub = self._bus.subscribe(OutageWork, handler, group=unique(self.name),
                                        retry=self.retry, name=self.name)
        warm_subscription(self._sub)
        self._sub.run(timeout=30)

    def stop(self) -> None:
        if self._bus is not None:
            self._bus.close()


# -- the driver ------------------------------------------------------------------------------
@dataclass
class OutageRun:
    """What :func:`run_outage` recorded. Timeline lanes: ``producer``, ``dependency`` (an
    ``outage`` interval) and one per pipeline (``processed`` / ``failed`` with detail
    ``seq`` and ``attempt``; ``dead_lettered`` read back from the broker)."""

    config: OutageConfig
    timeline: Timeline
    pipelines: list[str]
    items: list[WorkItem]
    outage_t: tuple[float, float] = (0.0, 0.0)
    produce_t: dict[int, float] = field(default_factory=dict)
    dead_letters: dict[str, list[int]] = field(default_factory=dict)
    finished: dict[str, bool] = field(default_factory=dict)
    #: from the first send until every item was handled (or the drain timed out)
    producing_t: tuple[float, float] = (0.0, 0.0)

    def handler_for(self, lane: str, dependency: Dependency) -> ProcessFn:
        def process(item: WorkItem, attempt: int) -> None:
            detail = {"seq": item.seq, "attempt": attempt}
            try:
                if item.needs_dependency:
                    dependency.call()
            except DependencyDown:
                self.timeline.record(lane, "failed", key=item.key, detail=detail)
                raise
            self.timeline.record(lane, "processed", key=item.key, detail=detail)
        return process


def run_outage(broker: BrokerHandle, pipelines: Sequence[Pipeline], dependency: Dependency,
               config: OutageConfig, timeline: Timeline | None = None) -> OutageRun:
    """Run the outage against every pipeline at once; stop them all on every exit path."""
    timeline = timeline or Timeline()
    items = config.items()
    run = OutageRun(config=config, timeline=timeline, pipelines=[p.name for p in pipelines],
                    items=items)
    done: dict[str, set[int]] = {p.name: set() for p in pipelines}
    lock = threading.Lock()

    def tracker(name: str, process: ProcessFn) -> ProcessFn:
        def wrapped(item: WorkItem, attempt: int) -> None:
            process(item, attempt)
            with lock:
                done[name].add(item.seq)
        return wrapped

    def dead(name: str) -> DeadLetterFn:
        def on_dead_letter(seq: int) -> None:
            with lock:
                done[name].add(seq)
        return on_dead_letter

    started: list[Pipeline] = []
    producer = KafkaProducer(**broker.clients(linger_ms=0))
    try:
        for p in pipelines:
            started.append(p)
            if hasattr(p, "timeline"):
                p.timeline = timeline
            p.start(tracker(p.name, run.handler_for(p.name, dependency)), dead(p.name))
        t_first = time.monotonic()
        dependency.schedule(t_first + config.outage_start_s,
                            t_first + config.outage_start_s + config.outage_s)
        timeline.interval("dependency", "outage", dependency.down_from, dependency.down_until)
        run.outage_t = (timeline.to_t(dependency.down_from), timeline.to_t(dependency.down_until))
        gap = 1.0 / config.rate_per_s
        for i, item in enumerate(items):
            delay = t_first + i * gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            run.produce_t[item.seq] = timeline.now()
            futures = []
            for p in pipelines:
                key, value, headers = p.encode(item)
                futures.append(producer.send(p.main_topic, key=key, value=value, headers=headers))
            timeline.record("producer", "produced", key=item.key,
                            detail={"seq": item.seq, "needs_dependency": item.needs_dependency})
            for future in futures:
                future.get(timeout=30)
        deadline = time.monotonic() + config.drain_timeout_s
        while time.monotonic() < deadline:
            with lock:
                if all(len(s) == len(items) for s in done.values()):
                    break
            time.sleep(0.05)
        with lock:
            run.finished = {name: len(s) == len(items) for name, s in done.items()}
        run.producing_t = (timeline.to_t(t_first), timeline.now())
    finally:
        producer.close()
        for p in reversed(started):
            try:
                p.stop()
            except Exception:  # stop the others all the same
                log.exception("could not stop pipeline %s", p.name)
    for p in pipelines:
        seqs = sorted(p.decode_dead_letter(r.value) for r in read_topic(broker, p.dead_letter_topic))
        run.dead_letters[p.name] = seqs
        for seq in seqs:
            timeline.record(p.name, "dead_lettered", detail={"seq": seq})
    return run


# -- reading a run -----------------------------------------------------------------------------
def _handled(run: OutageRun) -> Any:
    frame = run.timeline.to_frame()
    rows = frame[frame.what.isin(["processed", "failed"])].copy()
    rows["seq"] = [d["seq"] for d in rows.detail]
    rows["attempt"] = [d["attempt"] for d in rows.detail]
    rows["needs_dependency"] = [run.items[s].needs_dependency for s in rows.seq]
    rows["produced_t"] = [run.produce_t.get(s) for s in rows.seq]
    return rows


def throughput(run: OutageRun, bin_s: float = 0.5) -> Any:
    """Per pipeline and time bin: healthy-key items processed per second."""
    import pandas as pd

    rows = _handled(run)
    ok = rows[(rows.what == "processed") & ~rows.needs_dependency]
    end = float(rows.t.max()) if len(rows) else run.config.duration_s
    bins = [i * bin_s for i in range(int(end / bin_s) + 2)]
    out = []
    for name in run.pipelines:
        counts = pd.cut(ok[ok.who == name].t, bins, right=False).value_counts(sort=False)
        for interval, count in counts.items():
            out.append({"pipeline": name, "t": interval.left, "per_s": count / bin_s})
    return pd.DataFrame(out)


def summarize(run: OutageRun, *, on_time_s: float = 1.0) -> Any:
    """One row per pipeline: the numbers E05 and E06 compare (all from recorded data).

    - ``healthy_in_outage``: the healthy-key throughput the outage left: of the healthy-key
      items produced during the outage, the share processed within ``on_time_s`` of being
      produced (1.0: kept up; near 0: blocked; a backlog worked off later does not count);
    - ``healthy_stall_max_s``: the longest time no healthy-key item was processed, among gaps
      that overlap the outage (a blocked partition shows here first);
    - ``healthy_latency_max_s``: the slowest healthy item, produce to processed;
    - ``retried_latency_median_s`` / ``_max_s``: produce to processed, items that failed first;
    - ``max_attempts``; ``dead_lettered`` (read back from the dead-letter topic);
    - ``lost``: produced, never processed and not in the dead-letter topic;
    - ``duplicated``: processed more than once; ``keys_out_of_order``: keys whose items were
      processed (first time) in an order other than they were produced;
    - ``rebalances``: partitions revoked or lost while items were being produced and handled
      (bus pipelines, from their membership lane; ``NA`` for the raw pipelines, which assign
      their partitions and have no group membership).
    """
    import pandas as pd

    rows = _handled(run)
    frame = run.timeline.to_frame()
    lo, hi = run.outage_t
    healthy_in_window = [s for s, t in run.produce_t.items()
                         if lo <= t < hi and not run.items[s].needs_dependency]
    out = []
    for name in run.pipelines:
        mine = rows[rows.who == name]
        ok = mine[mine.what == "processed"]
        first_ok = ok.sort_values("t").drop_duplicates("seq")
        latency = (first_ok.t - first_ok.produced_t)
        failed_seqs = set(mine[mine.what == "failed"].seq)
        retried = latency[first_ok.seq.isin(failed_seqs)]
        healthy = latency[~first_ok.needs_dependency]
        on_time = set(first_ok[(first_ok.t - first_ok.produced_t) <= on_time_s].seq)
        in_outage = len(on_time.intersection(healthy_in_window))
        healthy_t = sorted(ok[~ok.needs_dependency].t)
        stall = max((b - a for a, b in zip(healthy_t, healthy_t[1:], strict=False)
                     if b > lo and a < hi), default=float("nan"))
        dead = set(run.dead_letters.get(name, []))
        processed = set(ok.seq)
        lost = [i.seq for i in run.items if i.seq not in processed and i.seq not in dead]
        order_changed = 0
        for _key, group in first_ok.sort_values("t").groupby("key"):
            if list(group.seq) != sorted(group.seq):
                order_changed += 1
        group_rows = frame[frame.who == f"{name}-group"]
        p0, p1 = run.producing_t
        rebalances: Any = pd.NA if group_rows.empty else int(
            ((group_rows.what.isin(["revoked", "lost"])) & (group_rows.t >= p0)
             & (group_rows.t <= p1)).sum())
        out.append({
            "pipeline": name,
            "produced": len(run.items),
            "processed": len(processed),
            "dead_lettered": len(dead),
            "lost": len(lost),
            "duplicated": int((ok.seq.value_counts() > 1).sum()),
            "max_attempts": int(mine.attempt.max()) if len(mine) else 0,
            "healthy_in_outage": in_outage / len(healthy_in_window) if healthy_in_window else float("nan"),
            "healthy_stall_max_s": stall,
            "healthy_latency_max_s": float(healthy.max()) if len(healthy) else float("nan"),
            "retried_latency_median_s": float(retried.median()) if len(retried) else float("nan"),
            "retried_latency_max_s": float(retried.max()) if len(retried) else float("nan"),
            "keys_out_of_order": order_changed,
            "rebalances": rebalances,
            "finished": run.finished.get(name, False),
        })
    return pd.DataFrame(out).set_index("pipeline")


def plot_outage(run: OutageRun, *, title: str | None = None) -> Any:
    """The pipelines of one run on one time axis (seconds since the run's timeline began):
    healthy-key items processed so far (a flat stretch is a blocked partition), latency of
    items that failed first (plotted when they were finally processed), and the order in
    which each pipeline processed the first dependent key's items (a point below the rising
    line is an item processed after a later one of its key). The outage is shaded."""
    from matplotlib.figure import Figure

    rows = _handled(run)
    ok = rows[rows.what == "processed"].sort_values("t")
    first_ok = ok.drop_duplicates(["who", "seq"])
    failed_rows = rows[rows.what == "failed"]
    failed = set(zip(failed_rows.who, failed_rows.seq, strict=True))
    fig = Figure(figsize=(10, 8), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    dependent_key = next((i.key for i in run.items if i.needs_dependency), None)
    markers = "osD^v<>"
    for n, name in enumerate(run.pipelines):
        mine = first_ok[first_ok.who == name]
        healthy = mine[~mine.needs_dependency]
        (line,) = axes[0].step(healthy.t, range(1, len(healthy) + 1), where="post", label=name,
                               lw=2.2 - 0.35 * n)
        color, marker = line.get_color(), markers[n % len(markers)]
        retried = mine[mine.seq.map(lambda s, n=name: (n, s) in failed).astype(bool)]
        axes[1].plot(retried.t, retried.t - retried.produced_t, marker, ms=4, color=color,
                     alpha=0.8, label=name)
        keyed = mine[mine.key == dependent_key]
        axes[2].plot(keyed.t, keyed.seq, marker, ms=4, color=color, alpha=0.8, label=name)
    for ax in axes:
        ax.axvspan(*run.outage_t, color="#fdd0a2", alpha=0.5, lw=0)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("healthy-key items\nprocessed (cumulative)")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].set_ylabel("retried item latency (s)")
    axes[2].set_ylabel(f"{dependent_key}: seq processed")
    axes[2].set_xlabel("seconds (shaded: dependency down)")
    axes[0].set_title(title or "the same outage, one time axis")
    return fig
