"""The confluent-kafka (librdkafka) side of a Python member: :class:`ConfluentAdapter`.

- **Settings** (:func:`confluent_settings`): ``None`` leaves librdkafka's default;
  ``group.protocol`` is ``classic`` or ``consumer`` (KIP-848); ``session.timeout.ms`` and
  ``heartbeat.interval.ms`` are passed under either protocol when the config sets them:
  under ``consumer`` they are the broker's, and librdkafka 2.16 refuses them (``Consumer()``
  raises ``_INVALID_ARG`` "... is not supported for group.protocol=consumer ... It is defined
  broker side"), which the member reports as a fatal ``error`` at ``start``
  (``max.poll.interval.ms`` and ``group.instance.id`` are accepted under ``consumer``). Under
  ``classic`` librdkafka also refuses ``max.poll.interval.ms`` below ``session.timeout.ms``
  (its default session is 45 s: a max poll interval under 45 s needs a shorter session).
  ``enable.auto.commit`` false unless commit
  ``auto``; ``auto.offset.reset=earliest`` when ``from_beginning``; ``client.id`` is the
  member's name; ``extra`` is merged last, as it is.
- ``error_cb`` becomes ``error`` events (``where: error_cb``, ``fatal``: the error's own
  ``fatal()``, ``code``: the error's name); a fatal one ends the member (``stopped`` with
  ``clean: false``). librdkafka never raises for an unreachable broker: it keeps reporting
  through ``error_cb`` (2.16 at its defaults, nothing listening: ``_TRANSPORT`` about 19
  times a second, ``_ALL_BROKERS_DOWN`` every 10 s), so a non-fatal code is emitted at most
  once per :data:`ERROR_EVERY_S`; ``suppressed`` counts the reports of that code folded
  into it since the previous event.
- Records: ``consume(n, 0)`` takes what is there, else ``poll(timeout)`` waits for one
  (``consume()`` waits for all ``n``: the bus's compat quirk).
- ``join`` (in ``on_assign``): ``generation`` from
  :func:`compat.generation_of` of ``consumer_group_metadata()``, ``member_id`` from
  ``memberid()``; librdkafka tells neither the leader nor a join duration (None).
  ``on_assign`` / ``on_revoke`` / ``on_lost`` emit ``assigned`` / ``revoked`` / ``lost``
  (not for an empty list: under KIP-848 a member that only gave partitions away gets an
  ``on_assign`` of nothing, which is still a ``join``); confluent-kafka assigns after
  ``on_assign`` returns (the member pauses nothing inside it).
- A seek that fails with ``_STATE`` (the partition's fetcher has not started) is applied
  at the next poll; the partition's records are dropped until then (:data:`compat.SEEK_NOT_READY`).
- **Commits**: ``idiomatic`` is ``commit(message=msg, asynchronous=False)``;
  ``message_offset`` / ``offset_plus_one`` are ``commit(offsets=[TopicPartition(t, p, o)],
  asynchronous=False)``; the returned partitions (their ``error`` checked) are the ``commit``
  events. ``auto`` commits are reported through ``on_commit``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from offsetlab.bus.transports.confluent import compat
from offsetlab.lab.clients.protocol import MemberConfig
from offsetlab.lab.clients.pymember_loop import TP, Emit, Rec, text

__all__ = ["ConfluentAdapter", "confluent_settings"]

log = logging.getLogger(__name__)

_BATCH = 500
#: at most one non-fatal ``error_cb`` event per error code in this many seconds
ERROR_EVERY_S = 1.0


def confluent_settings(config: MemberConfig, **callbacks: Any) -> dict[str, Any]:
    """The ``Consumer`` configuration of ``config`` (see the module docstring)."""
    settings: dict[str, Any] = {
        "bootstrap.servers": config.bootstrap,
        "group.id": config.group,
        "client.id": config.who,
        "group.protocol": config.group_protocol,
        "enable.auto.commit": config.commit == "auto",
    }
    if config.from_beginning:
        settings["auto.offset.reset"] = "earliest"
    for key, name in (("session_timeout_ms", "session.timeout.ms"),
                      ("heartbeat_interval_ms", "heartbeat.interval.ms"),
                      ("max_poll_interval_ms", "max.poll.interval.ms"),
                      ("group_instance_id", "group.instance.id")):
        value = getattr(config, key)
        if value is not None:
            settings[name] = value
    settings.update(callbacks)
    settings.update(config.extra)
    return settings


def _tps(partitions: Any) -> list[list[Any]]:
    return sorted([tp.topic, tp.partition] for tp in partitions)


def _error_text(error: KafkaError) -> str:
    return f"KafkaError: {error.name()}: {error.str()}"


class ConfluentAdapter:
    """confluent-kafka behind the loop's :class:`~offsetlab.lab.clients.pymember_loop.Adapter`."""

    def __init__(self, config: MemberConfig, emit: Emit) -> None:
        self.config = config
        self.emit = emit
        self.consumer: Consumer | None = None
        self.assigned_once = False
        self.fatal: str | None = None
        self.pending_seeks: dict[TP, int] = {}
        self._last_error_at: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def start(self) -> None:
        compat.check_topics(self.config.topics)
        callbacks: dict[str, Any] = {"error_cb": self._on_error,
                                     "logger": compat.LIBRDKAFKA_LOGGER}
        if self.config.commit == "auto":
            callbacks["on_commit"] = self._on_commit
        self.consumer = Consumer(confluent_settings(self.config, **callbacks))
        self.emit("ready")
        self.consumer.subscribe(self.config.topics, on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)

    # -- callbacks (served inside poll/consume, on the loop's thread) --------------------
    def _on_error(self, error: KafkaError) -> None:
        fatal = bool(error.fatal()) or error.code() == KafkaError._FATAL
        if fatal:
            self.fatal = _error_text(error)
        code, now = error.name(), time.monotonic()
        if not fatal and now - self._last_error_at.get(code, -ERROR_EVERY_S) < ERROR_EVERY_S:
            self._suppressed[code] += 1
            return
        self._last_error_at[code] = now
        self.emit("error", where="error_cb", error=_error_text(error), fatal=fatal, code=code,
                  suppressed=self._suppressed.pop(code, 0))

    def _on_commit(self, error: KafkaError | None, partitions: Any) -> None:
        if error is not None:
            self.emit("commit_failed", error=_error_text(error), where="auto")
            return
        for tp in partitions:
            if tp.error is not None:
                self.emit("commit_failed", topic=tp.topic, partition=tp.partition,
                          error=_error_text(tp.error), where="auto")
            elif tp.offset >= 0:
                self.emit("commit", topic=tp.topic, partition=tp.partition, offset=tp.offset)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.emit("join", generation=compat.generation_of(consumer.consumer_group_metadata()),
                  member_id=consumer.memberid(), leader=None, join_s=None,
                  partitions=_tps(partitions))
        if partitions:
            self.emit("assigned", partitions=_tps(partitions))
        self.assigned_once = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            self.emit("revoked", partitions=_tps(partitions))
        for tp in partitions:
            self.pending_seeks.pop((tp.topic, tp.partition), None)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            self.emit("lost", partitions=_tps(partitions))
        for tp in partitions:
            self.pending_seeks.pop((tp.topic, tp.partition), None)

    # -- the loop's interface ----------------------------------------------------------
    def poll(self, timeout_s: float) -> list[Rec]:
        assert self.consumer is not None
        self._apply_pending_seeks()
        messages = self.consumer.consume(_BATCH, 0)
        if not messages:
            first = self.consumer.poll(timeout_s)
            messages = [first] if first is not None else []
            if messages:
                messages += self.consumer.consume(_BATCH - 1, 0)
        records = []
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    # librdkafka hands the consumer a _FATAL message whose own fatal() is
                    # False (seen: UNRELEASED_INSTANCE_ID of a KIP-848 static member)
                    fatal = bool(error.fatal()) or error.code() == KafkaError._FATAL
                    self.emit("error", where="poll", error=_error_text(error), fatal=fatal,
                              code=error.name())
                    if fatal:
                        self.fatal = _error_text(error)
                continue
            if (msg.topic(), msg.partition()) in self.pending_seeks:
                continue
            records.append(Rec(msg.topic(), msg.partition(), msg.offset(), text(msg.key()),
                               text(msg.value()), msg))
        return records

    def _apply_pending_seeks(self) -> None:
        for tp, offset in list(self.pending_seeks.items()):
            if self._try_seek(tp, offset):
                del self.pending_seeks[tp]

    def _try_seek(self, tp: TP, offset: int) -> bool:
        assert self.consumer is not None
        try:
            self.consumer.seek(TopicPartition(tp[0], tp[1], offset))
        except KafkaException as exc:
            error = compat.error_of(exc)
            if error is not None and error.code() == compat.SEEK_NOT_READY:
                return False
            raise
        return True

    def held(self) -> list[TP]:
        assert self.consumer is not None
        return sorted((tp.topic, tp.partition) for tp in self.consumer.assignment())

    def pause(self, tps: list[TP]) -> None:
        assert self.consumer is not None
        self.consumer.pause([TopicPartition(t, p) for t, p in tps])

    def resume(self, tps: list[TP]) -> None:
        assert self.consumer is not None
        self.consumer.resume([TopicPartition(t, p) for t, p in tps])

    def seek(self, tp: TP, offset: int) -> None:
        if not self._try_seek(tp, offset):
            self.pending_seeks[tp] = offset

    def blocked(self, tp: TP) -> bool:
        return tp in self.pending_seeks

    def commit(self, rec: Rec, mode: str) -> dict[TP, int]:
        assert self.consumer is not None
        if mode == "idiomatic":
            result = self.consumer.commit(message=rec.raw, asynchronous=False)
        else:
            offset = rec.offset + (1 if mode == "offset_plus_one" else 0)
            result = self.consumer.commit(
                offsets=[TopicPartition(rec.topic, rec.partition, offset)], asynchronous=False)
        committed: dict[TP, int] = {}
        for tp in result or []:
            if tp.error is not None:
                raise KafkaException(tp.error)
            committed[(tp.topic, tp.partition)] = tp.offset
        return committed

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()
