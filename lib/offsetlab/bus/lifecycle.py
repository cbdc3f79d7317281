"""The consumer runner's state and the typed lifecycle events it emits.

KafkaJS tells its users what a consumer is doing through instrumentation events (CONNECT,
GROUP_JOIN with a duration, REBALANCING, STOP, CRASH, DISCONNECT, ...). The runner
(:mod:`offsetlab.bus.runner`) does the same with frozen dataclasses, one per kind, all
subclasses of :class:`LifecycleEvent`. A *listener* is any ``callable(event)``; listeners
run on the runner's thread, in the order the events happened; a listener that raises is
logged and skipped, it never stops the runner.

Order you can rely on for one consumer incarnation::

    Connect -> GroupJoin -> (Commit | Pause | Resume | Rebalance ...)* -> Stop -> Disconnect
    Connect -> GroupJoin -> ... -> Crash(restart=True) -> Disconnect -> Connect -> GroupJoin ...
    Connect -> ... -> Crash(restart=False) -> Disconnect           (state CRASHED)
    Crash(restart=False)                                  (the consumer could not even be built)

``Rebalance(phase="assigned")`` is emitted for every assignment, including the first one
(which is also reported as the ``GroupJoin`` of that incarnation, right after it); an empty
assignment is reported too (more members than partitions, a topic that does not exist).
``revoked``/``lost`` with no partitions are not reported (kafka-python revokes "nothing"
before every first join).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from offsetlab.bus.types import TopicPartition

__all__ = [
    "RunnerState",
    "LifecycleKind",
    "LifecycleEvent",
    "Connect",
    "GroupJoin",
    "Rebalance",
    "RebalancePhase",
    "Pause",
    "Resume",
    "Commit",
    "Stop",
    "Crash",
    "Disconnect",
    "LifecycleListener",
]


class RunnerState(StrEnum):
    """Where a :class:`~offsetlab.bus.runner.ConsumerRunner` is in its life."""

    CREATED = "created"
    """Built, ``start()`` not called yet."""
    STARTING = "starting"
    """Thread running, consumer being built / joining the group (also while restarting)."""
    RUNNING = "running"
    """Joined the group at least once in this incarnation; polling and handling."""
    STOPPING = "stopping"
    """``stop()`` asked: committing settled offsets, leaving the group, closing."""
    STOPPED = "stopped"
    """Closed on request. Terminal."""
    CRASHED = "crashed"
    """Closed because of an error the crash policy would not restart. Terminal."""


class LifecycleKind(StrEnum):
    """The ``kind`` of a :class:`LifecycleEvent` (a string, handy as a DataFrame column)."""

    CONNECT = "connect"
    GROUP_JOIN = "group_join"
    REBALANCE = "rebalance"
    PAUSE = "pause"
    RESUME = "resume"
    COMMIT = "commit"
    STOP = "stop"
    CRASH = "crash"
    DISCONNECT = "disconnect"


RebalancePhase = Literal["revoked", "assigned", "lost"]


@dataclass(frozen=True, kw_only=True)
class LifecycleEvent:
    """Base of all lifecycle events.

    ``at`` is ``time.monotonic()`` when the thing happened (for a rebalance: when
    kafka-python called the rebalance listener, not when the event was delivered);
    ``runner`` is the runner's name (its kafka ``client_id``).
    """

    kind: LifecycleKind
    at: float
    runner: str


def _kind(k: LifecycleKind) -> LifecycleKind:
    return field(default=k, init=False)


@dataclass(frozen=True, kw_only=True)
class Connect(LifecycleEvent):
    """A KafkaConsumer was built and bootstrapped (kafka-python connects in its constructor).

    ``incarnation`` counts consumers this runner has built: 1 for the first, 2 after the
    first crash-restart, ...
    """

    kind: LifecycleKind = _kind(LifecycleKind.CONNECT)
    incarnation: int = 1


@dataclass(frozen=True, kw_only=True)
class GroupJoin(LifecycleEvent):
    """The first assignment of a consumer incarnation arrived: the group join succeeded.

    ``duration_s`` runs from ``subscribe()`` to the assignment callback (KafkaJS reports the
    same thing as ``duration`` in GROUP_JOIN). ``member_id`` and ``generation`` come from
    ``KafkaConsumer.group_metadata()`` at that moment (``""``/``-1`` if not known).
    """

    kind: LifecycleKind = _kind(LifecycleKind.GROUP_JOIN)
    member_id: str = ""
    generation: int = -1
    assignment: tuple[TopicPartition, ...] = ()
    duration_s: float = 0.0
    incarnation: int = 1


@dataclass(frozen=True, kw_only=True)
class Rebalance(LifecycleEvent):
    """kafka-python called the rebalance listener.

    ``revoked``: partitions given up cleanly (before a rejoin, or on close); ``assigned``:
    the new assignment; ``lost``: the member was evicted (session timeout, fenced) and
    could not commit (KIP-429 ``on_partitions_lost``).
    """

    kind: LifecycleKind = _kind(LifecycleKind.REBALANCE)
    phase: RebalancePhase = "assigned"
    partitions: tuple[TopicPartition, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Pause(LifecycleEvent):
    """Fetching from ``partitions`` was paused (the member keeps polling and stays)."""

    kind: LifecycleKind = _kind(LifecycleKind.PAUSE)
    partitions: tuple[TopicPartition, ...] = ()
    reapplied: bool = False
    """True when the runner re-paused them after a rebalance handed them back."""


@dataclass(frozen=True, kw_only=True)
class Resume(LifecycleEvent):
    """Fetching from ``partitions`` resumed."""

    kind: LifecycleKind = _kind(LifecycleKind.RESUME)
    partitions: tuple[TopicPartition, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Commit(LifecycleEvent):
    """Offsets were committed: ``offsets[tp]`` is the *next* offset to read (last settled + 1)."""

    kind: LifecycleKind = _kind(LifecycleKind.COMMIT)
    offsets: Mapping[TopicPartition, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Stop(LifecycleEvent):
    """``stop()`` finished its commit and the consumer is about to close (then Disconnect)."""

    kind: LifecycleKind = _kind(LifecycleKind.STOP)


@dataclass(frozen=True, kw_only=True)
class Crash(LifecycleEvent):
    """A handler, a listener hook or the client raised.

    ``restart`` says what the crash policy decided: True -> the consumer is closed and a new
    one built after the policy's backoff (KafkaJS's default); False -> the runner ends in
    ``CRASHED``. ``restarts`` is how many restarts happened before this crash.
    """

    kind: LifecycleKind = _kind(LifecycleKind.CRASH)
    error: BaseException = field(default_factory=lambda: RuntimeError("unknown"))
    restart: bool = False
    restarts: int = 0
    during_join: bool = False
    """True when the crash happened before the incarnation's group join (a join failure)."""


@dataclass(frozen=True, kw_only=True)
class Disconnect(LifecycleEvent):
    """The consumer was closed (it left the group if it could)."""

    kind: LifecycleKind = _kind(LifecycleKind.DISCONNECT)
    incarnation: int = 1


LifecycleListener = Callable[[LifecycleEvent], object]
"""Anything callable with one event; the return value is ignored."""
