"""Looking at a bus from outside, for tests and experiments: what a topic holds, where a
group stands, and drivers that run a bus until what a scenario waits for has happened.

Readers (kafka-python, imported inside the functions; ``bootstrap_servers`` is a
``"host:port"`` string or a sequence of them, ``client_settings`` any further kafka-python
settings such as security):

- :func:`read_topic` -- every record of a topic now, sorted by (partition, offset), read
  with a group-less consumer that never creates the topic (a missing topic reads as ``[]``);
- :func:`committed_offsets` -- a group's committed positions (the next offset to read) per
  partition of a topic; partitions the group never committed are left out;
- :func:`end_offsets` -- the end offset (the next offset to be written) per partition;
- :func:`committed_to_end` / :func:`wait_committed_to_end` -- whether the group's committed
  positions have reached the end of every partition (no commit counts as position 0).

Drivers (the :class:`Driver` protocol: a bus, its clock, and how time passes on it):

- :class:`MemoryDriver` -- an :class:`~offsetlab.bus.memory.InMemoryBus` on a
  :class:`~offsetlab.bus.memory.ManualClock`: ``idle`` settles the bus (drain, move the clock
  to the next wake-up, until the time is spent), ``wait_until`` settles until a predicate
  holds; simulated seconds, deterministic;
- :class:`KafkaDriver` -- a Kafka bus in real time: ``idle`` sleeps, ``wait_until`` polls the
  predicate, ``records`` is :func:`read_topic`.

Importing this module needs the standard library and ``offsetlab.bus`` only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from offsetlab.bus.deadline import Deadline, wait_until
from offsetlab.bus.interface import EventBus
from offsetlab.bus.memory import InMemoryBus, ManualClock

__all__ = [
    "read_from_committed",
    "Servers",
    "read_topic",
    "committed_offsets",
    "end_offsets",
    "committed_to_end",
    "wait_committed_to_end",
    "RecordLike",
    "Driver",
    "MemoryDriver",
    "KafkaDriver",
]

#: one ``"host:port"`` or several
Servers = str | Sequence[str]


def _client_kwargs(bootstrap_servers: Servers, client_settings: Mapping[str, Any] | None,
                   **overrides: Any) -> dict[str, Any]:
    servers = bootstrap_servers if isinstance(bootstrap_servers, str) else list(bootstrap_servers)
    return {"bootstrap_servers": servers, **(client_settings or {}), **overrides}


def _partitions(consumer: Any, topic: str) -> list[Any]:
    """``topic``'s partitions from fresh metadata (a topic created a moment ago is seen)."""
    from kafka.structs import TopicPartition

    consumer.topics()  # refresh metadata
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def _read_to_end(consumer: Any, tps: list[Any], topic: str, timeout_s: float) -> list[Any]:
    """Poll the assigned, positioned ``consumer`` up to the end offsets taken now; the
    records sorted by (partition, offset)."""
    end = consumer.end_offsets(tps)
    out: list[Any] = []
    deadline = Deadline(timeout_s)
    while any(consumer.position(tp) < end[tp] for tp in tps):
        if deadline.expired():
            raise TimeoutError(f"could not read {topic} to its end within {timeout_s} s")
        for records in consumer.poll(timeout_ms=200).values():
            out.extend(records)
    return sorted(out, key=lambda r: (r.partition, r.offset))


def read_topic(bootstrap_servers: Servers, topic: str, *, timeout_s: float = 20.0,
               client_settings: Mapping[str, Any] | None = None) -> list[Any]:
    """Every record of ``topic`` now, sorted by (partition, offset): kafka-python
    ``ConsumerRecord``s read from the beginning to the end offsets taken at the start, with a
    group-less consumer (no commits; never creates the topic: a missing topic reads as
    ``[]``). ``TimeoutError`` when the end is not reached within ``timeout_s``."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**_client_kwargs(bootstrap_servers, client_settings, group_id=None,
                                              enable_auto_commit=False,
                                              allow_auto_create_topics=False))
    try:
        tps = _partitions(consumer, topic)
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return _read_to_end(consumer, tps, topic, timeout_s)
    finally:
        consumer.close(autocommit=False)


def committed_offsets(bootstrap_servers: Servers, group: str, topic: str, *,
                      client_settings: Mapping[str, Any] | None = None) -> dict[int, int]:
    """``group``'s committed positions on ``topic`` (partition -> the next offset it reads),
    asked of the group coordinator; partitions the group never committed are left out."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**_client_kwargs(bootstrap_servers, client_settings))
    try:
        offsets = admin.list_group_offsets({group: None}).get(group, {})  # kafka-python 3.x name
    finally:
        admin.close()
    return {tp.partition: om.offset for tp, om in sorted(offsets.items())
            if tp.topic == topic and om.offset >= 0}


def end_offsets(bootstrap_servers: Servers, topic: str, *,
                client_settings: Mapping[str, Any] | None = None) -> dict[int, int]:
    """The end offset (the next offset to be written) of each partition of ``topic`` now;
    ``{}`` for a topic that does not exist (it is not created)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**_client_kwargs(bootstrap_servers, client_settings, group_id=None,
                                              enable_auto_commit=False,
                                              allow_auto_create_topics=False))
    try:
        tps = _partitions(consumer, topic)
        return {tp.partition: int(off) for tp, off in consumer.end_offsets(tps).items()} if tps else {}
    finally:
        consumer.close(autocommit=False)


def read_from_committed(bootstrap_servers: Servers, group: str, topic: str, *,
                        timeout_s: float = 20.0,
                        client_settings: Mapping[str, Any] | None = None) -> list[Any]:
    """The records of ``topic`` at or after ``group``'s committed offset of each partition
    (position 0 where it never committed), read to the end offsets taken at the start with
    a group-less consumer. ``[]`` means the group consumed everything; with
    ``client_settings={"isolation_level": "read_committed"}`` transaction markers and
    aborted records, which no reader gets, do not count (a transactional group's committed
    offset can sit before a trailing commit or abort marker)."""
    from kafka import KafkaConsumer

    admin_settings = {k: v for k, v in (client_settings or {}).items() if k != "isolation_level"}
    committed = committed_offsets(bootstrap_servers, group, topic, client_settings=admin_settings)
    consumer = KafkaConsumer(**_client_kwargs(bootstrap_servers, client_settings, group_id=None,
                                              enable_auto_commit=False,
                                              allow_auto_create_topics=False))
    try:
        tps = _partitions(consumer, topic)
        if not tps:
            return []
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, committed.get(tp.partition, 0))
        return _read_to_end(consumer, tps, topic, timeout_s)
    finally:
        consumer.close(autocommit=False)


def committed_to_end(bootstrap_servers: Servers, group: str, topic: str, *,
                     client_settings: Mapping[str, Any] | None = None) -> bool:
    """``group`` has committed the end offset of every partition of ``topic`` (a partition
    without a commit counts as position 0, so an empty partition is at its end)."""
    end = end_offsets(bootstrap_servers, topic, client_settings=client_settings)
    committed = committed_offsets(bootstrap_servers, group, topic, client_settings=client_settings)
    return all(committed.get(p, 0) == off for p, off in end.items())


def wait_committed_to_end(bootstrap_servers: Servers, group: str, topics: Iterable[str], *,
                          timeout_s: float, client_settings: Mapping[str, Any] | None = None,
                          interval_s: float = 0.2) -> None:
    """Until :func:`committed_to_end` holds for every topic of ``topics``; ``TimeoutError``
    naming the group and the topics after ``timeout_s``."""
    topics = list(topics)
    wait_until(lambda: all(committed_to_end(bootstrap_servers, group, t,
                                            client_settings=client_settings) for t in topics),
               timeout_s=timeout_s, interval_s=interval_s,
               what=f"group {group} to commit {topics} to their ends")


# -- drivers -----------------------------------------------------------------------------------
class RecordLike(Protocol):
    """A record read back: kafka-python's ``ConsumerRecord`` or the memory bus's
    :class:`~offsetlab.bus.memory.StoredRecord`."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any  # sequence of (str, bytes)


class Driver(Protocol):
    """A bus and its time: what a scenario needs besides the bus's own interface."""

    bus: EventBus
    clock: Callable[[], float]
    kind: str

    def name(self, base: str) -> str:
        """A group (or other) name unique to this run."""
        ...

    def sleep(self, seconds: float) -> None:
        """Time passing inside a dependency (a slow call); nothing else happens meanwhile."""
        ...

    def idle(self, seconds: float) -> None:
        """Let the bus work for ``seconds``."""
        ...

    def wait_until(self, predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        """Let the bus work until ``predicate()``; :attr:`timeout_error` naming ``what``
        after ``timeout_s``."""
        ...

    def records(self, topic: str) -> Sequence[RecordLike]:
        """Every record of ``topic`` so far (empty if it does not exist)."""
        ...


class MemoryDriver:
    """An :class:`InMemoryBus` on a :class:`ManualClock`: time moves only when nothing else
    can happen (a backoff, a not-before time, a breaker's next alive check), so a run is
    deterministic and takes no wall-clock time. ``bus_factory(clock)`` builds the bus."""

    kind = "memory"
    #: what :meth:`wait_until` raises when the bus goes idle before the predicate holds
    timeout_error: type[Exception] = TimeoutError

    def __init__(self, bus_factory: Callable[[ManualClock], InMemoryBus]) -> None:
        self.clock = ManualClock()
        self.bus = bus_factory(self.clock)

    def name(self, base: str) -> str:
        return base  # a fresh bus per run: names cannot collide

    def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def idle(self, seconds: float) -> None:
        """Settle the bus for ``seconds`` of simulated time, then stand at their end."""
        until = self.clock() + seconds
        self.bus.settle(max_time_s=seconds)
        self.clock.advance_to(until)
        self.bus.drain()

    def wait_until(self, predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        deadline = self.clock() + timeout_s
        while True:
            self.bus.drain()
            if predicate():
                return
            wake = self.bus.next_wakeup()
            if wake is None or wake > deadline:
                raise self.timeout_error(
                    f"waited {timeout_s:g} s (simulated) for {what}; the bus is idle. Last "
                    f"activity: {[a.kind.value for a in self.bus.activity[-8:]]}")
            self.clock.advance_to(wake)

    def records(self, topic: str) -> list[Any]:
        return list(self.bus.records(topic))


class KafkaDriver:
    """A Kafka bus (built by the caller) in real time. ``records(topic)`` is
    :func:`read_topic`; ``clock`` is the clock the bus stamps its activities with (epoch
    seconds by default: the time base of not-before headers)."""

    kind = "kafka"
    #: what :meth:`wait_until` raises when the predicate does not hold in time
    timeout_error: type[Exception] = TimeoutError

    def __init__(self, bus: EventBus, bootstrap_servers: Servers, *,
                 client_settings: Mapping[str, Any] | None = None,
                 clock: Callable[[], float] = time.time, run_id: str | None = None,
                 poll_s: float = 0.05, read_timeout_s: float = 10.0) -> None:
        self.bus = bus
        self.bootstrap_servers = bootstrap_servers
        self.client_settings = dict(client_settings or {})
        self.clock = clock
        self.run_id = run_id or uuid.uuid4().hex[:10]
        self.poll_s = poll_s
        self.read_timeout_s = read_timeout_s

    def name(self, base: str) -> str:
        return f"{base}-{self.run_id}"

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)

    def wait_until(self, predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        try:
            wait_until(predicate, timeout_s=timeout_s, what=what, interval_s=self.poll_s)
        except TimeoutError as exc:
            if self.timeout_error is TimeoutError:
                raise
            raise self.timeout_error(str(exc)) from exc

    def records(self, topic: str) -> list[Any]:
        return read_topic(self.bootstrap_servers, topic, timeout_s=self.read_timeout_s,
                          client_settings=self.client_settings)
