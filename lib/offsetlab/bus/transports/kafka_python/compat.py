"""kafka-python's quirks, in one place (kafka-python 3.0.x).

The bus's kafka-python transport and the lab's raw kafka-python experiments both import
these; nobody else works around the client.

- :func:`reap_io_threads`: a failed ``KafkaConsumer``/``KafkaProducer``/``KafkaAdminClient``
  construction leaves its IO thread running;
- :func:`unstick_join`: a group join the client abandons leaves a member with no partitions;
- :func:`warmed_consumer`: a consumer factory that knows its topics' partitions before it
  joins (the first join otherwise races the first metadata fetch);
- :func:`close_now`: ``KafkaProducer.close(timeout)`` with records still pending raises
  from its flush before it stops the sender thread, so the producer is never closed;
- :func:`unpark_resumed`: records parked for a paused partition are never given back after
  it is resumed, so the partition stalls for good;
- :data:`REBALANCE_COMMIT_ERRORS`: the commit errors that only mean "the group moved on".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaConsumer

__all__ = ["reap_io_threads", "unstick_join", "warmed_consumer", "REBALANCE_COMMIT_ERRORS",
           "io_threads", "unpark_resumed", "close_now"]

_log = logging.getLogger(__name__)

REBALANCE_COMMIT_ERRORS: tuple[type[BaseException], ...] = (
    kafka_errors.CommitFailedError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.IllegalGenerationError,
    kafka_errors.UnknownMemberIdError,
)
"""Errors of a commit that only mean "the group moved on": not a crash, records get redelivered."""


def io_threads() -> set[int | None]:
    """Idents of the threads alive now (take it before a construction that may fail)."""
    return {t.ident for t in threading.enumerate()}


def reap_io_threads(before: set[int | None], client_id: str) -> int:
    """Stop IO threads a failed client construction left behind; return how many.

    kafka-python 3.0.12 starts its IO thread (``kafka-io-<client_id>``) before it bootstraps
    in ``KafkaConsumer.__init__`` and does not stop it when the bootstrap fails (e.g. the
    broker is unreachable), so every failed construction would leak a thread. The thread's
    target is the bound ``NetworkSelector.run_forever``; closing that selector ends it.
    Best effort: threads started by others under the same client id may be missed.
    """
    reaped = 0
    for thread in threading.enumerate():
        if thread.name != f"kafka-io-{client_id}" or thread.ident in before:
            continue
        selector = getattr(getattr(thread, "_target", None), "__self__", None)
        close = getattr(selector, "close", None)
        if callable(close):
            try:
                close()
                reaped += 1
            except Exception:
                _log.warning("could not stop leaked kafka IO thread %s", thread.name, exc_info=True)
    return reaped


def unstick_join(consumer: Any) -> bool:
    """Restart a group join kafka-python 3.0.12 abandoned; return True if it did.

    When a rejoin is triggered by the leader's metadata snapshot changing (typically right
    after a first generation that was assigned before the metadata showed a just-created
    topic), ``poll()`` can time out while the JoinGroup/SyncGroup task is in flight; by the
    time the task finishes, ``need_rejoin()`` already answers False (the leader recorded
    the new snapshot while assigning), so no later ``poll()`` consumes the task's result:
    the assignment is never applied and the member sits with no partitions until something
    else forces a rejoin (seen on embedded Kafka 4.1.1: 20 s to minutes). That stuck state
    is "join task done, nothing wants to rejoin"; asking for a rejoin lets the next
    ``poll()`` run a fresh join. Consumers without those internals (fakes) are left alone.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_join_task", None)
    if coordinator is None or task is None or not getattr(task, "is_done", False):
        return False
    try:
        if coordinator.need_rejoin():
            return False
        coordinator.request_rejoin()
    except Exception:  # internals changed: leave the consumer to itself
        _log.debug("could not inspect kafka-python's join state", exc_info=True)
        return False
    return True


def warmed_consumer(topics: Sequence[str] = (), *, snapshot: bool = False
                    ) -> Callable[..., KafkaConsumer]:
    """A consumer factory: ``KafkaConsumer(**kwargs)`` that knows its topics' partitions
    before it joins (a ``consumer_factory`` for the runner or
    :class:`~offsetlab.bus.KafkaBusConfig`). ``topics`` are fetched at construction, and
    the topics given to ``subscribe`` are fetched before it subscribes.

    Without it the first JoinGroup can race kafka-python's first metadata fetch: the leader
    assigns nothing (log: ``No partition metadata for topic``) and rejoins when the metadata
    arrives; here (kafka-python 3.0.12, Kafka 4.1.1, rebalance delay 0) that rejoin sometimes
    never finished and a member sat outside the group (E01 saw it in about one two-member join
    in four, E03 until a session timed out). The seed's topics existed before its consumers
    started, so knowing the partitions first is the seed's situation too.

    ``snapshot=True`` also refreshes the coordinator's metadata *snapshot* right after
    ``subscribe``: the coordinator compares the metadata it assigned with against later
    metadata and rejoins on a difference, and its snapshot is otherwise only refreshed when
    the next metadata response arrives, which can be after the first assignment (an empty
    snapshot, then a rejoin). Warm metadata alone is not enough for the bus's subscriptions
    (E05, E06).
    """
    wanted = tuple(topics)

    def make(**kwargs: Any) -> KafkaConsumer:
        consumer = KafkaConsumer(**kwargs)
        try:
            for topic in wanted:
                consumer.partitions_for_topic(topic)
        except BaseException:
            consumer.close(autocommit=False)
            raise
        subscribe = consumer.subscribe

        def warm_subscribe(topics: Sequence[str] = (), *args: Any, **kw: Any) -> Any:
            for topic in topics or ():
                consumer.partitions_for_topic(topic)
            result = subscribe(topics, *args, **kw)
            if snapshot:
                coordinator = getattr(consumer, "_coordinator", None)
                update = getattr(coordinator, "_handle_metadata_update", None)
                if update is not None:
                    update(consumer._client.cluster)
            return result

        consumer.subscribe = warm_subscribe
        return consumer

    return make


def unpark_resumed(consumer: Any) -> bool:
    """Make ``consumer`` give back the records it parked for a partition once that partition
    is resumed. Returns False when the client has no such fetcher (nothing done).

    kafka-python 3.0.12's ``Fetcher.fetched_records`` parks the parsed records of a partition
    paused while they are next in line (``_paused_partition_records``) and restores them
    only when the in-line slot ``_next_partition_records`` *is None*; once another
    partition's records were drained the slot holds a drained (falsy) object instead, so
    the resumed partition stays parked, and a parked partition is never fetched again: it
    stalls for good. Reproduced on the embedded broker (tests/integration/
    test_kafka_python_compat.py: a partition paused after its first 5 of 100 records is
    stuck at 5 after its resume, and delivers all 100 with this) and under ``offsetlab
    chaos --retry in-place`` (an in-place retry pauses its partition for the backoff): three
    partitions stalled for a whole drain. The fix clears a drained slot before each
    ``fetched_records`` call, so the parked records take it. It reaches into the client's
    private fetcher (``_fetcher``, ``_next_partition_records``)."""
    fetcher = getattr(consumer, "_fetcher", None)
    fetched_records = getattr(fetcher, "fetched_records", None)
    if fetcher is None or fetched_records is None or not hasattr(fetcher,
                                                                  "_next_partition_records"):
        return False

    def unparked(*args: Any, **kwargs: Any) -> Any:
        slot = fetcher._next_partition_records
        if slot is not None and not slot:  # drained: let a resumed partition's records in
            fetcher._next_partition_records = None
        return fetched_records(*args, **kwargs)

    fetcher.fetched_records = unparked
    return True


def close_now(producer: Any) -> None:
    """Close a producer without waiting for its pending records (they are dropped).

    kafka-python 3.0.12's ``KafkaProducer.close(timeout)`` first calls ``flush(timeout)``,
    which raises ``KafkaTimeoutError`` while records are pending; the exception leaves the
    sender thread running and the producer open, and at interpreter exit ``__del__`` tries
    again and prints ``Exception ignored in KafkaProducer.__del__`` (seen at the end of an
    ``offsetlab chaos`` run, after the publish producer was replaced twice). Here the sender
    is force-closed (its pending batches fail) and the producer marked closed."""
    try:
        producer.close(timeout=0)
        return
    except kafka_errors.KafkaTimeoutError:
        pass
    except Exception:  # best effort: the producer is being dropped because it failed
        _log.debug("close(timeout=0) raised", exc_info=True)
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
    producer._closed = True
