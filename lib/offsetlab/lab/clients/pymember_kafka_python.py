"""The kafka-python (3.x) side of a Python member: :class:`KafkaPythonAdapter`.

- **Settings** (:func:`kafka_python_settings`): ``None`` leaves kafka-python's default (3.0.12:
  session 45 s, heartbeat 3 s, max poll interval 300 s); ``client_id`` is the member's name;
  ``auto_offset_reset="earliest"`` when ``from_beginning``; auto-commit only for commit
  ``auto``; ``extra`` is merged last, as it is.
- The consumer is built by the bus's :func:`compat.warmed_consumer` (it knows its topics'
  partitions before it joins) and :func:`compat.unstick_join` runs after every ``poll()``:
  kafka-python 3.0.12's known join quirks.
- **The rebalance listener runs on kafka-python's IO thread** (3.0.12 invokes it from its
  event loop: a run saw both callbacks on ``kafka-io-<client_id>``, not the polling thread):
  it only emits events and reads the coordinator's fields (``_generation``, ``_is_leader``),
  never calls the consumer.
- ``join``: ``generation`` and ``member_id`` from the coordinator's generation, ``leader``
  from the coordinator, ``join_s`` = the last JoinGroup round trip (request to response,
  SyncGroup not included) kafka-python measured for its ``join-latency`` sensor (the sensor
  behind the ``join-time-max``/``join-time-avg`` metrics, which keep only a window's max and
  average; the member keeps the last value it records). The empty ``on_partitions_revoked``
  of the eager protocol before a first join is not an event (nothing was taken away).
- **Commits**: ``idiomatic`` is ``commit()`` (synchronous; it commits every assigned
  partition's *consumed position*, i.e. past every record the last ``poll()`` returned, which
  the ``commit`` events show); ``message_offset`` / ``offset_plus_one`` commit
  ``{tp: OffsetAndMetadata(offset, "", -1)}``; ``auto`` commits are reported through
  ``default_offset_commit_callback`` (kafka-python calls it for every auto-commit; the commit
  of ``close()`` is synchronous and not reported).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition

from offsetlab.bus.transports.kafka_python import compat
from offsetlab.lab.clients.protocol import MemberConfig
from offsetlab.lab.clients.pymember_loop import TP, Emit, Rec, describe, text

__all__ = ["KafkaPythonAdapter", "kafka_python_settings"]

log = logging.getLogger(__name__)


def kafka_python_settings(config: MemberConfig, **callbacks: Any) -> dict[str, Any]:
    """The ``KafkaConsumer`` keyword arguments of ``config`` (see the module docstring)."""
    settings: dict[str, Any] = {
        "bootstrap_servers": config.bootstrap,
        "group_id": config.group,
        "client_id": config.who,
        "enable_auto_commit": config.commit == "auto",
    }
    if config.from_beginning:
        settings["auto_offset_reset"] = "earliest"
    for key in ("session_timeout_ms", "heartbeat_interval_ms", "max_poll_interval_ms",
                "group_instance_id"):
        value = getattr(config, key)
        if value is not None:
            settings[key] = value
    settings.update(callbacks)
    settings.update(config.extra)
    return settings


def _tps(partitions: Any) -> list[list[Any]]:
    return sorted([tp.topic, tp.partition] for tp in partitions)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, adapter: KafkaPythonAdapter) -> None:
        self.adapter = adapter

    def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:   # the eager protocol revokes nothing before the first join: not an event
            self.adapter.emit("revoked", partitions=_tps(revoked))

    def on_partitions_lost(self, lost: Any) -> None:
        if lost:
            self.adapter.emit("lost", partitions=_tps(lost))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.adapter.on_assigned(assigned)


class _KeepLast:
    """A kafka-python ``Sensor`` that also keeps the last value recorded on it."""

    def __init__(self, sensor: Any) -> None:
        self.sensor = sensor
        self.last: float | None = None

    def record(self, value: float = 1.0, time_ms: Any = None) -> None:
        self.last = value
        self.sensor.record(value, time_ms)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sensor, name)


class KafkaPythonAdapter:
    """kafka-python behind the loop's :class:`~offsetlab.lab.clients.pymember_loop.Adapter`."""

    def __init__(self, config: MemberConfig, emit: Emit) -> None:
        self.config = config
        self.emit = emit
        self.consumer: KafkaConsumer | None = None
        self.assigned_once = False
        self.fatal: str | None = None
        self.join_latency: _KeepLast | None = None

    def start(self) -> None:
        callbacks: dict[str, Any] = {}
        if self.config.commit == "auto":
            callbacks["default_offset_commit_callback"] = self._auto_committed
        settings = kafka_python_settings(self.config, **callbacks)
        before = compat.io_threads()
        try:
            self.consumer = compat.warmed_consumer(self.config.topics)(**settings)
        except BaseException:
            compat.reap_io_threads(before, self.config.who)
            raise
        self._watch_join_latency()
        self.emit("ready")
        self.consumer.subscribe(self.config.topics, listener=_Listener(self))

    def _watch_join_latency(self) -> None:
        """Keep the last value kafka-python records on its ``join-latency`` sensor (the
        JoinGroup round trip it measures itself; its metrics only keep the window's max and
        average): the coordinator's sensor is swapped for a :class:`_KeepLast` around it."""
        sensors = getattr(getattr(self.consumer, "_coordinator", None), "_sensors", None)
        sensor = getattr(sensors, "join_latency", None)
        if sensor is not None:
            self.join_latency = _KeepLast(sensor)
            sensors.join_latency = self.join_latency  # type: ignore[union-attr]

    # -- callbacks (kafka-python's IO thread) --------------------------------------------
    def on_assigned(self, assigned: Any) -> None:
        coordinator = getattr(self.consumer, "_coordinator", None)
        generation = getattr(coordinator, "_generation", None)
        self.emit("join", generation=getattr(generation, "generation_id", None),
                  member_id=getattr(generation, "member_id", None),
                  leader=getattr(coordinator, "_is_leader", None), join_s=self._join_s(),
                  partitions=_tps(assigned))
        self.emit("assigned", partitions=_tps(assigned))
        self.assigned_once = True

    def _join_s(self) -> float | None:
        value = self.join_latency.last if self.join_latency is not None else None
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return round(float(value) / 1000.0, 4)

    def _auto_committed(self, offsets: Any, result: Any) -> None:
        if isinstance(result, BaseException):
            self.emit("commit_failed", error=describe(result), where="auto")
            return
        for tp, meta in sorted(offsets.items()):
            self.emit("commit", topic=tp.topic, partition=tp.partition,
                      offset=getattr(meta, "offset", meta))

    # -- the loop's interface ----------------------------------------------------------
    def poll(self, timeout_s: float) -> list[Rec]:
        assert self.consumer is not None
        batch = self.consumer.poll(timeout_ms=int(timeout_s * 1000))
        compat.unstick_join(self.consumer)
        return [Rec(r.topic, r.partition, r.offset, text(r.key), text(r.value), r)
                for records in batch.values() for r in records]

    def held(self) -> list[TP]:
        assert self.consumer is not None
        return sorted((tp.topic, tp.partition) for tp in self.consumer.assignment())

    def pause(self, tps: list[TP]) -> None:
        assert self.consumer is not None
        self.consumer.pause(*(TopicPartition(t, p) for t, p in tps))

    def resume(self, tps: list[TP]) -> None:
        assert self.consumer is not None
        self.consumer.resume(*(TopicPartition(t, p) for t, p in tps))

    def seek(self, tp: TP, offset: int) -> None:
        assert self.consumer is not None
        self.consumer.seek(TopicPartition(*tp), offset)

    def blocked(self, tp: TP) -> bool:
        return False

    def commit(self, rec: Rec, mode: str) -> dict[TP, int]:
        assert self.consumer is not None
        if mode == "idiomatic":
            # what commit() without arguments commits (kafka-python reads the same thing)
            consumed = self.consumer._subscription.all_consumed_offsets()
            self.consumer.commit()
            return {(tp.topic, tp.partition): int(getattr(meta, "offset", meta))
                    for tp, meta in consumed.items()}
        offset = rec.offset + (1 if mode == "offset_plus_one" else 0)
        tp = TopicPartition(rec.topic, rec.partition)
        self.consumer.commit({tp: OffsetAndMetadata(offset, "", -1)})
        return {rec.tp: offset}

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
