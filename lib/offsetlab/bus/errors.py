"""Exceptions of ``offsetlab.bus``: one root, a tree you can read here.

::

    BusError                         root of everything the adapter raises
    ├── ConfigError                  a config value is wrong (names the key and the fix)
    ├── RunnerError                  the consumer runner
    │   ├── JoinFailed               start()/run() could not join the group (wraps the cause)
    │   ├── JoinTimeout              run(timeout) waited longer than timeout for the join
    │   ├── RunnerStateError         a call that the runner's state does not allow
    │   └── StopTimeout              stop(timeout) waited longer than timeout for the thread
    ├── EnvelopeError                bytes on the wire are not one of our events
    │   ├── MalformedEnvelope        not JSON / missing fields / wrong shapes
    │   ├── UnknownEventType         a well-formed envelope of a type nobody registered
    │   └── MalformedHeaders         a provenance header (attempt, not-before, ...) of the
    │                                wrong size or encoding
    ├── PublishError                 the broker did not acknowledge a publish in time
    │   │                            (names topic, bootstrap servers, timeout; the
    │   │                            event stays on its aggregate)
    │   └── AggregatePublishError    publish_for_aggregate stopped at an event the broker
    │                                did not acknowledge (it and the rest stay pending)
    ├── TransactionError             transactional mode (``KafkaBusConfig.transactional_id``)
    │   ├── TransactionAborted       a batch's transaction was aborted: what it wrote is
    │   │                            discarded, its records are delivered again
    │   └── TransactionFenced        a newer producer with the same transactional id took
    │                                over (this member is a zombie): never restarted
    ├── BusStateError                a call the bus's or subscription's state does not
    │                                allow (publish after close, subscribe after close)
    └── DependencyUnavailable        a dependency's circuit breaker is open (fail fast)

Every message names the address, topic, timeout or parameter at fault and what to do.
"""

from __future__ import annotations

__all__ = [
    "BusError",
    "ConfigError",
    "RunnerError",
    "JoinFailed",
    "JoinTimeout",
    "RunnerStateError",
    "StopTimeout",
    "EnvelopeError",
    "MalformedEnvelope",
    "UnknownEventType",
    "MalformedHeaders",
    "PublishError",
    "AggregatePublishError",
    "TransactionError",
    "TransactionAborted",
    "TransactionFenced",
    "BusStateError",
    "DependencyUnavailable",
]


class BusError(Exception):
    """Root of every exception raised by ``offsetlab.bus``."""


class ConfigError(BusError, ValueError):
    """A configuration value is invalid; the message names the key and the fix."""


class RunnerError(BusError):
    """Raised by the consumer runner."""


class JoinFailed(RunnerError):
    """The runner could not join its consumer group; ``__cause__`` is the client error."""


class JoinTimeout(RunnerError, TimeoutError):
    """``run(timeout)`` gave up waiting for the group join."""


class RunnerStateError(RunnerError):
    """A call the runner's current state does not allow (e.g. subscribe while running)."""


class StopTimeout(RunnerError, TimeoutError):
    """``stop(timeout)`` gave up waiting for the runner thread (a handler still running?)."""


class EnvelopeError(BusError):
    """Bytes that do not decode to a registered event."""


class MalformedEnvelope(EnvelopeError):
    """Not JSON, or JSON without the envelope's fields and shapes."""


class UnknownEventType(EnvelopeError):
    """A well-formed envelope whose event type is not registered."""


class MalformedHeaders(EnvelopeError):
    """A provenance header has the wrong size or encoding (e.g. a 3-byte partition)."""


class PublishError(BusError):
    """The broker did not acknowledge a publish within the timeout."""


class AggregatePublishError(PublishError):
    """``publish_for_aggregate`` stopped at an event the broker did not acknowledge.

    ``published`` are the events acknowledged (and cleared from the aggregate) before the
    failure, ``unpublished`` the failed event and the ones after it, which stay on the
    aggregate in order; ``__cause__`` is the underlying :class:`PublishError`.
    """

    def __init__(self, message: str, *, published: tuple[object, ...] = (), unpublished: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.published = published
        self.unpublished = unpublished


class TransactionError(BusError):
    """Transactional mode: a transaction could not be begun, committed or aborted."""


class TransactionAborted(TransactionError):
    """A batch's transaction was aborted (a write or the commit failed, or timed out): its
    retry copies, dead letters, handler publishes and offsets are discarded together, and
    its records are delivered again."""


class TransactionFenced(TransactionError):
    """Another producer with the same transactional id fenced this one (a replacement of
    this worker started): this member must stop, not restart (a restart would fence the
    replacement back). ``restartable`` is False; the runner never restarts after it."""

    restartable = False


class BusStateError(BusError):
    """A call the bus's or subscription's state does not allow (e.g. publish after close)."""


class DependencyUnavailable(BusError):
    """A dependency's circuit breaker is open: fail fast instead of calling it."""
