"""Configuration of the consumer runner: :class:`RunnerConfig` and its :class:`CrashPolicy`.

Both are frozen keyword-only dataclasses validated in ``__post_init__``; a bad value raises
:class:`~offsetlab.bus.errors.ConfigError` naming the key and the fix. Client settings
pass through ``consumer_settings`` and are checked by the client's transport up front
(kafka-python: against ``KafkaConsumer.DEFAULT_CONFIG``), so a typo fails when the config
is built, not minutes later on a thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from offsetlab.bus.errors import ConfigError

__all__ = ["CrashPolicy", "RunnerConfig", "RUNNER_OWNED_KEYS", "checked_bootstrap_servers",
           "servers_text"]

RUNNER_OWNED_KEYS: frozenset[str] = frozenset(
    {"bootstrap_servers", "group_id", "client_id", "enable_auto_commit", "consumer_timeout_ms"}
)
"""kafka-python keys the runner sets itself; they are not accepted in ``consumer_settings``
(``enable_auto_commit`` is accepted only as ``False``)."""


def checked_bootstrap_servers(servers: Any, owner: str) -> str | tuple[str, ...]:
    """``'host:port'`` or a non-empty sequence of them (returned as a tuple); else a
    ``ConfigError`` naming ``owner``'s key. Shared by every config that takes servers."""
    checked: str | tuple[str, ...]
    if isinstance(servers, str):
        checked = servers
        ok = bool(servers.strip())
    else:
        checked = tuple(servers)
        ok = bool(checked) and all(isinstance(s, str) and s.strip() for s in checked)
    if not ok:
        raise ConfigError(
            f"{owner}.bootstrap_servers must be 'host:port' (or several), "
            f"got {checked!r}; pass e.g. broker.bootstrap_servers"
        )
    return checked


def servers_text(servers: str | tuple[str, ...]) -> str:
    """Checked bootstrap servers as one ``"host:port,host:port"`` string (librdkafka's
    ``bootstrap.servers``, and how errors name them)."""
    return servers if isinstance(servers, str) else ",".join(servers)


@dataclass(frozen=True, kw_only=True)
class CrashPolicy:
    """What the runner does after a crash (a handler or the client raised).

    KafkaJS restarts a crashed consumer by default (``restartOnFailure`` answers true) after
    its retry policy is exhausted, and stops for good on errors it considers not retriable.
    Here that is explicit:

    - ``restart`` (default ``True``, like KafkaJS): close the consumer, wait ``backoff_s``
      (doubling per consecutive restart up to ``max_backoff_s``), build a new consumer, rejoin
      and resume from the committed offsets. ``False``: close and end in ``CRASHED``.
    - ``max_restarts``: stop restarting after this many restarts (``None``: never give up).
    - ``fatal``: exception types that never restart, whatever ``restart`` says (KafkaJS
      treats its non-retriable errors the same way). Exceptions that are not
      ``Exception`` (``KeyboardInterrupt``, ``SystemExit``) never restart either.

    A failure *before the first group join* (bad bootstrap, invalid topic, authorization) is
    never restarted: it fails the :class:`~offsetlab.bus.runner.JoinHandle` instead, so the
    caller of ``run()`` sees it (the seed's "await run() so it can handle errors"). KafkaJS
    does not: a join the broker refused resolved ``await run()`` right after a CRASH event
    (E02's client section).
    """

    restart: bool = True
    max_restarts: int | None = None
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    fatal: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.restart, bool):
            raise ConfigError(f"CrashPolicy.restart must be a bool, got {self.restart!r}")
        if self.max_restarts is not None and (
            not isinstance(self.max_restarts, int) or self.max_restarts < 0
        ):
            raise ConfigError(
                f"CrashPolicy.max_restarts must be None (unlimited) or an int >= 0, "
                f"got {self.max_restarts!r}"
            )
        for key in ("backoff_s", "max_backoff_s"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"CrashPolicy.{key} must be a finite number >= 0, got {value!r}")
        if self.max_backoff_s < self.backoff_s:
            raise ConfigError(
                f"CrashPolicy.max_backoff_s ({self.max_backoff_s}) must be >= backoff_s "
                f"({self.backoff_s}); raise max_backoff_s or lower backoff_s"
            )
        fatal = tuple(self.fatal)
        for t in fatal:
            if not (isinstance(t, type) and issubclass(t, BaseException)):
                raise ConfigError(f"CrashPolicy.fatal must hold exception types, got {t!r}")
        object.__setattr__(self, "fatal", fatal)

    def decide(self, error: BaseException, restarts_so_far: int) -> bool:
        """True if a crash with ``error`` after ``restarts_so_far`` restarts should restart."""
        if not self.restart or isinstance(error, self.fatal):
            return False
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: never restart
            return False
        return self.max_restarts is None or restarts_so_far < self.max_restarts

    def backoff_for(self, restart_number: int) -> float:
        """Seconds to wait before restart number ``restart_number`` (1 for the first)."""
        factor: int = 2 ** max(0, restart_number - 1)  # int ** int is Any to mypy
        return min(self.max_backoff_s, self.backoff_s * factor)


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """How a :class:`~offsetlab.bus.runner.ConsumerRunner` consumes.

    - ``bootstrap_servers``: ``"host:port"`` or several, comma separated, or a sequence.
    - ``group_id``: the consumer group (required: the runner is about group membership).
    - ``topics``: topics to subscribe to (names are checked by kafka-python at subscribe, so
      an invalid name surfaces as :class:`~offsetlab.bus.errors.JoinFailed`, as in E02).
    - ``name``: the runner's name in events and logs, and the kafka ``client_id``
      (default ``"offsetlab-<group_id>"``).
    - ``poll_timeout_ms`` (default 100): the longest one ``poll()`` blocks. It bounds how late
      ``on_tick`` runs and how long a ``stop()``/``pause()`` from another thread waits.
    - ``join_poll_timeout_ms`` (default 20): ``poll()`` timeout while waiting for a group
      join, so ``run()`` returns within a few tens of ms of the assignment arriving.
    - ``close_timeout_ms`` (default 10000): budget for the final commit and ``close()``.
    - ``crash_policy``: see :class:`CrashPolicy`.
    - ``consumer_settings``: any other consumer setting of the client, checked by its
      transport when the config is built. kafka-python: ``KafkaConsumer`` keywords (e.g.
      ``auto_offset_reset``, ``session_timeout_ms``, ``bootstrap_timeout_ms``);
      confluent-kafka: the same names where librdkafka has the setting, or librdkafka's
      dotted properties. Unknown keys and the keys in :data:`RUNNER_OWNED_KEYS` raise;
      ``enable_auto_commit=True`` raises (the runner commits offset + 1 of settled records
      itself).
    - ``client``: ``"kafka-python"`` (default) or ``"confluent-kafka"``
      (:mod:`offsetlab.bus.transports`).
    """

    bootstrap_servers: str | tuple[str, ...]
    group_id: str
    topics: tuple[str, ...]
    name: str = ""
    poll_timeout_ms: int = 100
    join_poll_timeout_ms: int = 20
    close_timeout_ms: int = 10_000
    crash_policy: CrashPolicy = field(default_factory=CrashPolicy)
    consumer_settings: Mapping[str, Any] = field(default_factory=dict)
    client: str = "kafka-python"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bootstrap_servers",
                           checked_bootstrap_servers(self.bootstrap_servers, "RunnerConfig"))
        if not isinstance(self.group_id, str) or not self.group_id:
            raise ConfigError(
                f"RunnerConfig.group_id must be a non-empty string, got {self.group_id!r}"
            )
        if isinstance(self.topics, str):
            raise ConfigError(
                f"RunnerConfig.topics must be a tuple of names, not a string; "
                f"write topics=({self.topics!r},)"
            )
        topics = tuple(self.topics)
        if not topics or not all(isinstance(t, str) for t in topics):
            raise ConfigError(
                f"RunnerConfig.topics must be a non-empty tuple of topic names, got {self.topics!r}"
            )
        object.__setattr__(self, "topics", topics)
        if not isinstance(self.name, str):
            raise ConfigError(f"RunnerConfig.name must be a string, got {self.name!r}")
        if not self.name:
            object.__setattr__(self, "name", f"offsetlab-{self.group_id}")
        for key in ("poll_timeout_ms", "join_poll_timeout_ms", "close_timeout_ms"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"RunnerConfig.{key} must be an int > 0 (ms), got {value!r}")
        if not isinstance(self.crash_policy, CrashPolicy):
            raise ConfigError(
                f"RunnerConfig.crash_policy must be a CrashPolicy, got {self.crash_policy!r}"
            )
        self._check_consumer_settings()

    def _check_consumer_settings(self) -> None:
        from offsetlab.bus import transports

        client = transports.check_client(self.client, "RunnerConfig")
        settings = transports.get(client).check_consumer_settings(
            self.consumer_settings, "RunnerConfig")
        object.__setattr__(self, "consumer_settings", MappingProxyType(settings))

    def kafka_kwargs(self) -> dict[str, Any]:
        """kafka-python's ``KafkaConsumer(**kwargs)`` for this config (client
        ``"kafka-python"`` only; no topics: the runner subscribes)."""
        from offsetlab.bus.transports.kafka_python.consumer import consumer_kwargs

        return consumer_kwargs(self)
