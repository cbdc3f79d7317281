"""What a handler says about one delivery: ok, retry, or reject.

A handler returns one of these (``None`` counts as :class:`Ok`, so plain cosmicpython-style
handlers need not change), or raises. Raised exceptions are sorted by the subscription's
*error classifier* (``classify.py``) into retriable or fatal; a returned outcome needs no
classifying:

- :class:`Ok`: done; the position moves past the record.
- :class:`Retry`: try again later (the *retry strategy* of the subscription says how:
  in place, via the main topic, or via a retry topic); ``delay_s`` overrides the
  strategy's backoff for this one retry. Counts against ``max_retries``.
- :class:`Reject`: never retry; the record goes to the dead-letter topic with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from offsetlab.bus.errors import ConfigError

__all__ = ["Ok", "Retry", "Reject", "Outcome", "OK", "as_outcome"]


@dataclass(frozen=True)
class Ok:
    """The record is handled."""

    kind: Literal["ok"] = "ok"


@dataclass(frozen=True, kw_only=True)
class Retry:
    """Handle the record again later; ``reason`` is recorded, ``delay_s`` overrides backoff."""

    reason: str
    delay_s: float | None = None
    kind: Literal["retry"] = "retry"

    def __post_init__(self) -> None:
        if self.delay_s is not None and (not math.isfinite(self.delay_s) or self.delay_s < 0):
            raise ConfigError(
                f"Retry.delay_s={self.delay_s!r} must be a finite number >= 0, or None to use "
                "the retry strategy's backoff"
            )


@dataclass(frozen=True, kw_only=True)
class Reject:
    """Never retry the record; it goes to the dead-letter topic with ``reason``."""

    reason: str
    kind: Literal["reject"] = "reject"


Outcome = Ok | Retry | Reject

#: The one :class:`Ok` value (any ``Ok()`` is equal to it).
OK = Ok()


def as_outcome(result: object) -> Outcome:
    """Normalize a handler's return value; ``None`` is :data:`OK`.

    Raises ``TypeError`` (which the default error classifier calls fatal) for anything else,
    naming what came back, so a handler that returns e.g. ``True`` is caught at once.
    """
    if result is None:
        return OK
    if isinstance(result, Ok | Retry | Reject):
        return result
    raise TypeError(
        f"handler returned {result!r}; return Ok(), Retry(reason=...), Reject(reason=...) "
        "or None (counts as Ok), or raise"
    )
