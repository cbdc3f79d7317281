"""The confluent-kafka transport's ``publish_many`` over a fake ``confluent_kafka.Producer``:
receipts in order, the first record not acknowledged in time or refused raises
``PublishError`` naming topic, servers and timeout (no broker needed)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("confluent_kafka")

from confluent_kafka import KafkaError  # noqa: E402
from offsetlab.bus.errors import PublishError  # noqa: E402
from offsetlab.bus.transports.confluent.producer import PUBLISH, Producers  # noqa: E402


class FakeMessage:
    def __init__(self, partition: int, offset: int) -> None:
        self._p, self._o = partition, offset

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class FakeProducer:
    """Acknowledges every record at the next poll, except those in ``silent`` (never) and
    ``refused`` (with an error); partition = index % 3."""

    def __init__(self, silent: set[int] = frozenset(), refused: set[int] = frozenset(),
                 full_at: int | None = None) -> None:
        self.pending: list[tuple[int, Any]] = []
        self.count = 0
        self.silent, self.refused, self.full_at = silent, refused, full_at
        self.purged = False

    def produce(self, topic: str, value: bytes, key: bytes | None, partition: int = -1, *,
                on_delivery: Any, headers: Any) -> None:
        if self.full_at == self.count:
            self.full_at = None
            raise BufferError("queue full")
        assert headers is None or isinstance(headers, list)
        self.pending.append((self.count, on_delivery))
        self.count += 1

    def poll(self, timeout: float = 0) -> int:
        served, self.pending = self.pending, []
        for i, callback in served:
            if i in self.silent:
                continue
            error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if i in self.refused else None
            callback(error, FakeMessage(i % 3, 100 + i))
        return len(served)

    def purge(self) -> None:
        self.purged = True

    def flush(self, timeout: float = 0) -> int:
        return 0

    def close(self) -> None:
        pass


def _producers(fake: FakeProducer, timeout_s: float = 0.2) -> Producers:
    producers = Producers(bootstrap_servers="127.0.0.1:9", name="t", client_settings={},
                          publish_settings={}, reproduce_settings={},
                          publish_timeout_s=timeout_s, reproduce_timeout_s=timeout_s)
    producers._producers[PUBLISH] = fake  # type: ignore[assignment]
    return producers


def _records(n: int) -> list[tuple[str, bytes, bytes | None, tuple[tuple[str, bytes], ...]]]:
    return [("t", b"v%d" % i, None, (("h", b"1"),)) for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, 999, 1000, 2500])
def test_receipts_come_in_order(n: int) -> None:
    receipts = _producers(FakeProducer(full_at=n // 2 if n else None)).publish_many(_records(n))
    assert [(r.topic, r.partition, r.offset) for r in receipts] == [
        ("t", i % 3, 100 + i) for i in range(n)]


def test_the_first_record_not_acknowledged_in_time_is_named() -> None:
    fake = FakeProducer(silent={1500, 2000})
    with pytest.raises(PublishError) as caught:
        _producers(fake).publish_many(_records(2500))
    text = str(caught.value)
    assert "topic 't'" in text and "127.0.0.1:9" in text and "timeout: 0.2 s" in text
    assert "record 1500 of 2500, 1500 acknowledged" in text and fake.purged


def test_a_refused_record_is_named_with_the_brokers_error() -> None:
    with pytest.raises(PublishError, match="MSG_SIZE_TOO_LARGE.*record 7 of 10, 7 acknowledged"):
        _producers(FakeProducer(refused={7, 8})).publish_many(_records(10))
