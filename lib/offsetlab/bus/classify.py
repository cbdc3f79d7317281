"""The error classifier: is an exception raised by a handler retriable or fatal?

One policy object per subscription, never inside handlers (handlers just raise). It is
a different thing from the *retry strategy* (what a retry does: seek back, re-produce to
the main topic, or to a retry topic) and from the runner's *crash policy* (restart or stop
a consumer that crashed); the classifier only answers "is it worth trying again?".

Lookup walks the exception's MRO, most specific class first, so an entry for a subclass
beats one for its base, and the first class found in either table decides. kafka-python
errors and confluent-kafka ``KafkaException`` values that no table names use the client's own
``retriable`` flag. An exception nobody named is
``unknown`` (retriable by default, like Spring Kafka's ``DefaultErrorHandler``: retries are
bounded by ``max_retries`` and end in the dead-letter topic, so a bug costs a few
deliveries, while a transient failure we did not foresee is not lost).

Defaults:

- retriable: ``TimeoutError``, ``ConnectionError``, ``DependencyUnavailable`` (a circuit
  breaker is open), kafka-python errors with ``retriable = True``;
- fatal: ``EnvelopeError`` (bytes that are not our event), ``ValueError``, ``TypeError``,
  ``KeyError`` (validation: retrying the same bytes gives the same answer), kafka-python
  errors with ``retriable = False``.

Extend with :meth:`ErrorClassifier.with_retriable` / :meth:`ErrorClassifier.with_fatal`
(they return a new classifier; the newest entry for a class wins).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from offsetlab.bus.errors import ConfigError, DependencyUnavailable, EnvelopeError

__all__ = ["Classification", "ErrorClassifier", "DEFAULT_RETRIABLE", "DEFAULT_FATAL"]


class Classification(StrEnum):
    """The two answers of the classifier."""

    RETRIABLE = "retriable"
    """Worth another attempt: the cause is outside the record (dependency down, timeout)."""
    FATAL = "fatal"
    """Never retried: the record itself is the problem; it goes to the dead-letter topic."""


DEFAULT_RETRIABLE: tuple[type[BaseException], ...] = (
    TimeoutError,
    ConnectionError,
    DependencyUnavailable,
)
DEFAULT_FATAL: tuple[type[BaseException], ...] = (EnvelopeError, ValueError, TypeError, KeyError)


def _client_retriable(cls: type, exc: BaseException) -> bool | None:
    """The client library's own retriable flag when ``cls`` is its error root, else ``None``.

    Recognised by name, so the classifier imports no client: kafka-python's
    ``kafka.errors.KafkaError`` (a ``retriable`` class attribute) and confluent-kafka's
    ``KafkaException`` (its ``KafkaError`` argument answers ``retriable()``).
    """
    module, name = cls.__module__, cls.__qualname__
    if name == "KafkaError" and module == "kafka.errors":
        return bool(getattr(exc, "retriable", False))
    if name == "KafkaException" and module.split(".")[0] in ("cimpl", "confluent_kafka"):
        error = exc.args[0] if exc.args else None
        check = getattr(error, "retriable", None)
        return bool(check()) if callable(check) else False
    return None


def _check_types(method: str, types: tuple[object, ...]) -> None:
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise ConfigError(f"ErrorClassifier.{method}({t!r}): pass exception classes")


@dataclass(frozen=True, kw_only=True)
class ErrorClassifier:
    """Maps exceptions to :class:`Classification`; immutable, cheap to extend."""

    retriable: tuple[type[BaseException], ...] = DEFAULT_RETRIABLE
    fatal: tuple[type[BaseException], ...] = DEFAULT_FATAL
    unknown: Classification = Classification.RETRIABLE
    _table: dict[type[BaseException], Classification] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        _check_types("retriable", self.retriable)
        _check_types("fatal", self.fatal)
        if not isinstance(self.unknown, Classification):
            raise ConfigError(
                f"ErrorClassifier.unknown={self.unknown!r}: use Classification.RETRIABLE or "
                "Classification.FATAL"
            )
        both = set(self.retriable) & set(self.fatal)
        if both:
            names = sorted(t.__name__ for t in both)
            raise ConfigError(
                f"ErrorClassifier: {names} listed as both retriable and fatal; use "
                "with_retriable()/with_fatal() to move a class from one to the other"
            )
        table = {t: Classification.RETRIABLE for t in self.retriable}
        table.update({t: Classification.FATAL for t in self.fatal})
        object.__setattr__(self, "_table", table)

    def classify(self, exc: BaseException) -> Classification:
        """Retriable or fatal, by the most specific class of ``exc`` found in the tables."""
        for cls in type(exc).__mro__:
            hit = self._table.get(cls)
            if hit is not None:
                return hit
            retriable = _client_retriable(cls, exc)
            if retriable is not None:
                return Classification.RETRIABLE if retriable else Classification.FATAL
        return self.unknown

    def is_retriable(self, exc: BaseException) -> bool:
        return self.classify(exc) is Classification.RETRIABLE

    def with_retriable(self, *types: type[BaseException]) -> ErrorClassifier:
        """A copy that calls ``types`` (and their subclasses without own entry) retriable."""
        _check_types("with_retriable", types)
        return ErrorClassifier(
            retriable=tuple(dict.fromkeys((*self.retriable, *types))),
            fatal=tuple(t for t in self.fatal if t not in types),
            unknown=self.unknown,
        )

    def with_fatal(self, *types: type[BaseException]) -> ErrorClassifier:
        """A copy that calls ``types`` (and their subclasses without own entry) fatal."""
        _check_types("with_fatal", types)
        return ErrorClassifier(
            retriable=tuple(t for t in self.retriable if t not in types),
            fatal=tuple(dict.fromkeys((*self.fatal, *types))),
            unknown=self.unknown,
        )
