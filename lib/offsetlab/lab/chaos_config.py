"""One chaos run's parameters (:class:`ChaosConfig`), what it counted (:class:`ChaosResult`),
and the accounting: from the acknowledged events and the workers' processed counts to the
result (:func:`account`) and its printed lines (:func:`report`). See :mod:`offsetlab.lab.chaos`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from offsetlab.bus.errors import ConfigError
from offsetlab.bus.transports import check_client

from .chaos_worker import CONSUMER_MODES, MODES

__all__ = ["POLL_BATCH", "ChaosConfig", "ChaosResult", "account", "report"]

#: kafka-python's default ``max_poll_records``: the most a worker handles between commits
POLL_BATCH = 500


@dataclass(frozen=True, kw_only=True)
class ChaosConfig:
    """One chaos run. Defaults are the acceptance run (10,000 events, 5 kills, 1 restart)."""

    events: int = 10_000
    kills: int = 5
    broker_restarts: int = 1
    #: seeds the schedule (which worker, when); None: a random seed, printed
    seed: int | None = None
    workers: int = 3
    partitions: int = 6
    #: the publisher spreads the events over about this long; kills and restarts fall in it
    publish_s: float = 30.0
    #: events per publish call (``publish_many`` when the bus has it)
    publish_batch: int = 50
    #: the workers' consumer session timeout: how soon a killed worker's partitions move
    session_timeout_ms: int = 6000
    #: simulated work per event in the handler (ms), before the event is recorded, so that
    #: a batch takes a while and a kill can land between processing and the commit
    handle_ms: float = 5.0
    #: how long to wait, after publishing, for every acknowledged event to be processed
    drain_timeout_s: float = 180.0
    #: ``bus`` (KafkaBus subscription), ``raw`` (kafka-python poll loop, commit after the
    #: batch) or ``unsafe`` (commit before the batch: loses events, to show the run sees it)
    consumer: str = "bus"
    #: ``bus`` (KafkaBus publish) or ``raw`` (KafkaProducer, flush per batch) publisher
    publisher: str = "bus"
    #: the bus's client library (``bus`` publisher and consumers): ``kafka-python`` or
    #: ``confluent-kafka``; the ``raw`` and ``unsafe`` modes are kafka-python either way
    client: str = "kafka-python"
    run_id: str | None = None
    runs_dir: Path | None = None

    def __post_init__(self) -> None:
        for key, minimum in (("events", 1), ("kills", 0), ("broker_restarts", 0), ("workers", 1),
                             ("partitions", 1), ("publish_batch", 1), ("session_timeout_ms", 1000)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"ChaosConfig.{key} must be an int >= {minimum}, got {value!r}")
        for key in ("publish_s", "drain_timeout_s"):
            value = getattr(self, key)
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"ChaosConfig.{key} must be a number > 0 (seconds), got {value!r}")
        if not isinstance(self.handle_ms, int | float) or not 0 <= self.handle_ms <= 1000:
            raise ConfigError(f"ChaosConfig.handle_ms must be 0..1000 (ms), got {self.handle_ms!r}")
        if self.consumer not in CONSUMER_MODES:
            raise ConfigError(f"ChaosConfig.consumer={self.consumer!r}: use one of {CONSUMER_MODES}")
        if self.publisher not in MODES:
            raise ConfigError(f"ChaosConfig.publisher={self.publisher!r}: use one of {MODES}")
        check_client(self.client, "ChaosConfig")


@dataclass
class ChaosResult:
    run_id: str
    run_dir: Path
    config: dict[str, Any]
    seed: int
    produced: int = 0
    processed: int = 0
    lost: int = 0
    duplicated: int = 0
    redeliveries: int = 0
    written_twice: int = 0
    processed_unacknowledged: int = 0
    publish_failures: int = 0
    publisher_rebuilds: int = 0
    publish_failure_log: list[str] = field(default_factory=list)
    unacknowledged: int = 0
    lost_sample: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    #: every worker process: name, pid, exit status, events it handled
    workers: list[dict[str, Any]] = field(default_factory=list)
    drained: bool = False
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.lost else 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["exit_code"] = self.exit_code
        return data



def account(result: ChaosResult, acked: set[int], counts: Counter[int],
             copies: Counter[int], total: int) -> None:
    processed = acked & counts.keys()
    lost = sorted(acked - counts.keys())
    result.produced = len(acked)
    result.processed = len(processed)
    result.lost = len(lost)
    result.lost_sample = lost[:20]
    result.duplicated = sum(1 for s in processed if counts[s] > 1)
    result.redeliveries = sum(counts[s] - 1 for s in processed)
    result.written_twice = sum(1 for n in copies.values() if n > 1)
    result.processed_unacknowledged = len(counts.keys() - acked)
    result.unacknowledged = total - len(acked)


def report(result: ChaosResult, config: ChaosConfig, say: Callable[[str], None]) -> None:
    kills = sum(1 for a in result.actions if a["action"] == "kill")
    restarts = sum(1 for a in result.actions if a["action"] == "broker_restart")
    bound = (kills + restarts) * config.workers * POLL_BATCH
    say(f"produced: {result.produced}")
    say(f"processed: {result.processed}")
    say(f"lost: {result.lost}" + (f" (first: {result.lost_sample})" if result.lost else ""))
    say(f"duplicated: {result.duplicated} (extra deliveries {result.redeliveries}; written twice "
        f"by the publisher {result.written_twice}; in-flight bound (kills + restarts) x workers "
        f"x {POLL_BATCH} = {bound})")
    if result.publish_failures:
        say(f"publish: {result.publish_failures} failed publish calls, {result.publisher_rebuilds} "
            "new publish clients (the failures are in chaos.json: publish_failure_log)")
    if result.unacknowledged or result.processed_unacknowledged:
        say(f"unacknowledged: {result.unacknowledged} never acknowledged, "
            f"{result.processed_unacknowledged} of them processed anyway")
    t = result.timings
    parts = [f"{name} {t[key]:.1f} s" for name, key in
             (("broker start", "broker_start_s"), ("workers joined", "workers_joined_s"),
              ("publish", "publish_s"), ("drain", "drain_s"), ("stop", "stop_workers_s"),
              ("total", "total_s")) if key in t]
    say(f"timings: {', '.join(parts)}; done: kills {kills}, broker restarts {restarts}")
