"""E05's question asked of the adapter: fail03 on ``KafkaBus`` with a retry strategy.

:func:`run_fail03_bus` runs it with ``MainTopicRetry`` (the seed's idea done by the bus --
copy with an ``offsetlab-attempt`` header, acknowledged before the commit of offset + 1,
dead-letter topic with provenance after ``max_retries``) or, for E06, ``RetryTopicRetry``.
Its :class:`BusFail03Run` has the same ``attempts`` / ``processing_order`` / ``outcome`` as
the raw run (:mod:`~offsetlab.lab.experiments.e05_raw`), so the two tabulate side by side;
:func:`run_bus_variants` runs several at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

from offsetlab.brokers import BrokerHandle
from offsetlab.bus import KafkaBusConfig
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.bus.headers import Provenance, attempt_of, parse_provenance
from offsetlab.bus.interface import Activity, ActivityKind
from offsetlab.bus.kafka_bus import KafkaBus
from offsetlab.bus.retry import RetryStrategy, dead_letter_topic
from offsetlab.lab.experiments.outage_bus import BUS_CONSUMER_SETTINGS, warmed_factory
from offsetlab.lab.experiments.outage_scenario import DependencyDown
from offsetlab.lab.raw import committed_offsets, create_topic, end_offsets, read_topic, unique

__all__ = ["Fail03Message", "BusFail03Run", "run_fail03_bus", "run_bus_variants"]


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
    #: read back from the topics the group consumed (main, and retry for RetryTopicRetry):
    #: seq -> sorted ``offsetlab-attempt`` numbers of its records (original 1)
    deliveries_read: dict[int, list[int]] = field(default_factory=dict)

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
                            consumer_settings=BUS_CONSUMER_SETTINGS,
                            consumer_factory=warmed_factory())
    events = [Fail03Message(seq=i, message_key=f"key-{i % keys}") for i in range(n_messages)]
    with KafkaBus(registry, config) as bus:
        bus.add_listener(on_activity)
        sub = bus.subscribe(Fail03Message, handler, group=group, retry=retry)
        sub.run(timeout=30)
        bus.publish_many(events)  # sent together: all in the log before the first copy
        ids = {e.event_id: e.seq for e in events}
        deadline = Deadline(timeout_s)
        finished = False
        while not deadline.expired():
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
    read: dict[int, list[int]] = {}
    for t in topics:
        for record in read_topic(broker, t):
            event = registry.decode(record.value)
            assert isinstance(event, Fail03Message)
            read.setdefault(event.seq, []).append(attempt_of(record.headers or []))
    return BusFail03Run(strategy=type(retry).__name__, topic=topic, group=group,
                        produced=n_messages, calls=calls, dead_letters=dead,
                        committed={t: committed_offsets(broker, group, t).get(0) for t in topics},
                        end_offsets={t: end_offsets(broker, t)[0] for t in topics},
                        finished=finished, activity=activity,
                        deliveries_read={s: sorted(a) for s, a in sorted(read.items())})


def run_bus_variants(broker: BrokerHandle,
                     variants: Mapping[str, tuple[RetryStrategy, Mapping[int, int | None]]],
                     *, n_messages: int = 5, keys: int = 1) -> dict[str, BusFail03Run]:
    """:func:`run_fail03_bus` for several ``name -> (retry, failing)`` at once."""
    with ThreadPoolExecutor(max_workers=len(variants) or 1, thread_name_prefix="fail03-bus") as pool:
        futures = {name: pool.submit(run_fail03_bus, broker, retry, failing=failing,
                                     n_messages=n_messages, keys=keys)
                   for name, (retry, failing) in variants.items()}
        return {name: future.result() for name, future in futures.items()}
