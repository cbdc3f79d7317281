"""E10's two producers: one event every ``interval_s`` each, with ``acks="all"`` (kafka-python's
default, idempotent) or ``acks=1`` (kafka-python 3.0.12 then turns idempotence off: no producer
id, no sequence numbers, ``guarantee_message_order`` off; ``KafkaProducer.__init__``), every
send recorded with its time, acknowledgement or error; and :class:`LogTap`, which keeps
kafka-python's producer warnings (the errors it retried without telling the application).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer

from offsetlab.brokers.kafka_cluster import ClusterHandle
from offsetlab.bus.events import Event, EventRegistry
from offsetlab.lab.raw import unique

__all__ = ["SETTINGS", "LogTap", "Send", "Writer"]

log = logging.getLogger(__name__)

#: the producers: name -> what is given to ``KafkaProducer`` (nothing else differs)
SETTINGS: dict[str, dict[str, Any]] = {"acks=all": {"acks": "all"}, "acks=1": {"acks": 1}}


@dataclass
class Send:
    setting: str
    seq: int
    sent_at: float
    acked_at: float | None = None
    offset: int | None = None
    error: str | None = None


class Writer(threading.Thread):
    """One producer sending one event every ``interval_s`` while not held; records each send."""

    def __init__(self, cluster: ClusterHandle, setting: str, registry: EventRegistry,
                 event: type[Event], interval_s: float) -> None:
        super().__init__(daemon=True, name=f"e10-{setting}")
        self.setting = setting
        self.registry = registry
        self.event = event
        self.interval_s = interval_s
        self.client_id = f"e10-{setting.replace('=', '-')}-{unique('p')}"
        self.producer = KafkaProducer(**cluster.clients(client_id=self.client_id,
                                                        **SETTINGS[setting]))
        #: what kafka-python decided (it turns idempotence off for acks=1)
        self.idempotent = bool(self.producer.config["enable_idempotence"])
        self.sends: list[Send] = []
        self.hold = threading.Event()
        self.done = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        seq = 0
        cls: Any = self.event
        while not self.done.is_set():
            if not self.hold.is_set():
                topic, value, key, headers = self.registry.encode_record(cls(seq=seq))
                send = Send(self.setting, seq, time.time())
                with self._lock:
                    self.sends.append(send)
                future = self.producer.send(topic, value=value, key=key, headers=list(headers))
                future.add_callback(self._acked, send)
                future.add_errback(self._failed, send)
                seq += 1
            self.done.wait(self.interval_s)

    @staticmethod
    def _acked(send: Send, metadata: Any) -> None:
        send.acked_at, send.offset = time.time(), metadata.offset

    @staticmethod
    def _failed(send: Send, exc: BaseException) -> None:
        send.error = type(exc).__name__

    def acked_since(self, t: float) -> bool:
        with self._lock:
            return any(s.acked_at is not None and s.sent_at > t for s in self.sends)

    def close(self, timeout_s: float) -> None:
        self.done.set()
        self.join(5)
        try:
            self.producer.flush(timeout=timeout_s)
        except Exception:  # noqa: BLE001 - unacknowledged sends stay recorded as such
            log.warning("%s: flush did not finish in %.0f s", self.setting, timeout_s)
        self.producer.close(timeout=5)


class LogTap(logging.Handler):
    """kafka-python's producer warnings and errors, as (time, message)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.created, record.getMessage()))
