"""What the in-memory bus keeps instead of a broker: a clock, records, partitioning, faults.

- :class:`ManualClock`: time that moves only when told (``InMemoryBus.settle`` moves it);
- :class:`StoredRecord`: one record of a partition's log, shaped like a consumed record;
- :func:`murmur2` / :func:`partition_for_key`: Kafka's default partitioner for keyed
  records (the Java client's ``Utils.murmur2``, positive, modulo the partition count), so a
  key lands on the same partition number here as on a broker;
- :class:`Faults`: produce failures queued by ``InMemoryBus.fail_next``.
"""

from __future__ import annotations

from dataclasses import dataclass

from offsetlab.bus.errors import ConfigError
from offsetlab.bus.headers import Headers, Provenance, parse_provenance

__all__ = ["ManualClock", "StoredRecord", "murmur2", "partition_for_key", "Faults"]


class ManualClock:
    """A clock that moves only when told; call it for the time in epoch seconds."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock does not go back (advance({seconds}))")
        self._now += seconds
        return self._now

    def advance_to(self, when: float) -> float:
        if when > self._now:
            self._now = when
        return self._now


@dataclass(frozen=True, kw_only=True)
class StoredRecord:
    """One record in a partition's log, shaped like a consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int
    timestamp_type: str = "CreateTime"

    @property
    def provenance(self) -> Provenance:
        return parse_provenance(self.headers)

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``."""
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """32-bit MurmurHash2 with Kafka's seed, as the Java client's ``Utils.murmur2``."""
    length = len(data)
    h = 0x9747B28C ^ length
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & ~3
    extra = length % 4
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Faults:
    """Produce failures to inject: per producer (``publish``/``reproduce``), a queue of
    topics (``None``: any topic)."""

    PRODUCERS = ("publish", "reproduce")

    def __init__(self) -> None:
        self._queued: dict[str, list[str | None]] = {p: [] for p in self.PRODUCERS}

    def add(self, count: int, *, topic: str | None, producer: str) -> None:
        if producer not in self._queued:
            raise ConfigError(f"fail_next(producer={producer!r}): use 'publish' or 'reproduce'")
        self._queued[producer].extend([topic] * count)

    def take(self, producer: str, topic: str) -> bool:
        """True (and the fault is used up) if the next ``producer`` write to ``topic`` fails."""
        queued = self._queued[producer]
        for i, wanted in enumerate(queued):
            if wanted is None or wanted == topic:
                del queued[i]
                return True
        return False
