"""The outage E05 and E06 share, as data: the dependency, the work items, the scenario's
parameters, and what a pipeline under test must do.

:class:`Dependency` (a TCP service, :mod:`~offsetlab.lab.experiments.outage_dependency`) is
down between two instants (:class:`DependencyDown` for its callers while it is);
:class:`OutageConfig` describes the run (how long and how fast the producer sends, which keys
need the dependency, when the outage starts and how long it lasts) and makes the
:class:`WorkItem` schedule; :class:`OutageWork` is a work item as an event of the adapter;
:class:`Pipeline` is the protocol every retry strategy under test implements (raw ones in
:mod:`~offsetlab.lab.experiments.outage_raw`, the adapter in
:mod:`~offsetlab.lab.experiments.outage_bus`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from offsetlab.bus.errors import ConfigError
from offsetlab.bus.events import Event
from offsetlab.lab.experiments.outage_dependency import Dependency, DependencyDown

__all__ = [
    "DependencyDown",
    "Dependency",
    "WorkItem",
    "OutageWork",
    "OutageConfig",
    "ProcessFn",
    "DeadLetterFn",
    "Pipeline",
]


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
        """The ``seq`` of a record read back from :attr:`dead_letter_topic` (or from any of
        :meth:`handled_topics`: the copies carry the original's value)."""

    def handled_topics(self) -> list[str]:
        """The topics whose records the handler is called for (originals and copies): read
        back, their records with their attempt headers are the deliveries the broker holds."""
