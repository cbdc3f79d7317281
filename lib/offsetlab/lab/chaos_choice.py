"""The seeded choices of a chaos run's handlers: which events are poison
(:func:`poison_seqs`), which deliveries fail (:class:`FailureDice`), and the retry strategy
the workers subscribe with (:func:`retry_strategy`).

- Poison: ``P`` seqs drawn without replacement from ``0..N-1`` by ``random.Random(seed)``'s
  own stream (``f"{seed}:poison"``), so the orchestrator and every worker compute the same
  set from the run's seed alone.
- Failures: each worker *slot* (a replacement takes the slot of the worker it replaces) has
  an RNG seeded with ``f"{seed}:slot:{slot}"``; every delivery of a non-poison event draws
  once from it and fails (a retriable error) when the draw is below the fail rate. Per
  delivery, not per event: a redelivered or retried event draws again.
- Retries: ``max_retries`` is the smallest number with ``rate ** (max_retries + 1) *
  events <= 1e-3`` (at least 3): the chance that any event fails every delivery, and so
  goes to the dead-letter topic without being poison, is at most 1 in 1000 (rate 0.05,
  10 000 events: 5 retries, 1.6e-4). The backoff is small (50 ms, doubling, at most
  0.5 s), so retries happen while the kills do, not after the run.
"""

from __future__ import annotations

import math
import random

from offsetlab.bus.retry import (
    Backoff,
    InPlaceRetry,
    MainTopicRetry,
    RetryStrategy,
    RetryTopicRetry,
)

__all__ = ["RETRY_NAMES", "RETRY_BACKOFF", "MAX_FAIL_RATE", "ChaosFailure", "FailureDice",
           "poison_seqs", "max_retries_for", "retry_strategy"]

#: ``--retry`` values -> the strategy class
RETRY_NAMES = ("in-place", "main-topic", "retry-topic")
#: the retries' backoff (every strategy): short, so retries fall inside the kills' window
RETRY_BACKOFF = Backoff(initial_s=0.05, multiplier=2.0, max_s=0.5)
#: the highest ``--fail-rate`` accepted (above it the retries needed grow quickly)
MAX_FAIL_RATE = 0.5
#: the accepted chance that some non-poison event exhausts its retries
_EXHAUST = 1e-3


class ChaosFailure(TimeoutError):
    """The handler's seeded, retriable failure (a ``TimeoutError``: the bus's default error
    classifier calls it retriable)."""


def poison_seqs(seed: int, events: int, count: int) -> frozenset[int]:
    """``count`` seqs of ``0..events-1`` chosen by ``seed`` (the same on every process)."""
    if not 0 <= count <= events:
        raise ValueError(f"poison count {count} must be 0..{events}")
    return frozenset(random.Random(f"{seed}:poison").sample(range(events), count))


class FailureDice:
    """One worker slot's per-delivery failure draws (see the module docstring)."""

    def __init__(self, seed: int, slot: int, rate: float) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"fail rate {rate} must be 0..1")
        self.rate = rate
        self._rng = random.Random(f"{seed}:slot:{slot}")

    def fails(self) -> bool:
        """Draw for one delivery: True when it must fail."""
        return self.rate > 0 and self._rng.random() < self.rate


def max_retries_for(rate: float, events: int) -> int:
    """The smallest ``m >= 3`` with ``rate ** (m + 1) * events <= 1e-3``."""
    if rate <= 0:
        return 3
    if rate >= 1:
        raise ValueError(f"fail rate {rate} must be below 1: every delivery would fail")
    m = math.ceil(math.log(_EXHAUST / max(1, events)) / math.log(rate)) - 1
    return max(3, m)


def retry_strategy(name: str, rate: float, events: int) -> RetryStrategy:
    """The strategy ``--retry name`` stands for, with :func:`max_retries_for` and
    :data:`RETRY_BACKOFF`."""
    retries = max_retries_for(rate, events)
    if name == "in-place":
        return InPlaceRetry(max_retries=retries, backoff=RETRY_BACKOFF)
    if name == "main-topic":
        return MainTopicRetry(max_retries=retries, backoff=RETRY_BACKOFF)
    if name == "retry-topic":
        return RetryTopicRetry(max_retries=retries, backoff=RETRY_BACKOFF)
    raise ValueError(f"--retry {name!r}: use one of {RETRY_NAMES}")
