"""``compat.close_now``: a producer whose close() raises from its flush is force-closed;
one that closes is left alone (no mocks of a broker: a stand-in producer object)."""

from __future__ import annotations

import kafka.errors as kafka_errors
from offsetlab.bus.transports.kafka_python.compat import close_now


class Sender:
    def __init__(self) -> None:
        self.forced = False

    def force_close(self) -> None:
        self.forced = True


class Producer:
    def __init__(self, pending: bool) -> None:
        self.pending = pending
        self._sender = Sender()
        self._closed = False

    def close(self, timeout: float) -> None:
        if self.pending:  # kafka-python 3.0.12: flush(timeout) raises before the close
            raise kafka_errors.KafkaTimeoutError("Timeout waiting for future")
        self._closed = True


def test_a_producer_with_pending_records_is_force_closed() -> None:
    producer = Producer(pending=True)
    close_now(producer)
    assert producer._sender.forced and producer._closed


def test_a_producer_that_closes_is_not_forced() -> None:
    producer = Producer(pending=False)
    close_now(producer)
    assert not producer._sender.forced and producer._closed
