"""One chaos run's parameters (:class:`ChaosConfig`) and what it counted
(:class:`ChaosResult`). The accounting (pure verdicts) is :mod:`offsetlab.lab.chaos_accounting`,
the printed lines :mod:`offsetlab.lab.chaos_report`; see :mod:`offsetlab.lab.chaos`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from offsetlab.bus.errors import ConfigError
from offsetlab.bus.transports import check_client

from .chaos_choice import MAX_FAIL_RATE, RETRY_NAMES
from .chaos_worker import BUS_MODES, CONSUMER_MODES, MODES, SINKS

__all__ = ["POLL_BATCH", "ChaosConfig", "ChaosResult"]

#: kafka-python's default ``max_poll_records``: the most a worker handles between commits
POLL_BATCH = 500


@dataclass(frozen=True, kw_only=True)
class ChaosConfig:
    """One chaos run. Defaults are the acceptance run (10,000 events, 5 kills, 1 restart)."""

    events: int = 10_000
    kills: int = 5
    broker_restarts: int = 1
    #: 1: one broker; 3 (or more): a KRaft cluster (``start_broker("kafka", nodes=3)``)
    nodes: int = 1
    #: SIGKILLs of the node leading the most partitions (a cluster only)
    broker_kills: int = 0
    #: seeds the schedule (which worker, when), the poison events and the failure draws;
    #: None: a random seed, printed
    seed: int | None = None
    workers: int = 3
    partitions: int = 6
    #: the publisher spreads the events over about this long; kills and restarts fall in it.
    #: None: :attr:`window_s` (30 s; on a cluster at least 20 s per broker fault)
    publish_s: float | None = None
    #: events per publish call (``publish_many`` when the bus has it)
    publish_batch: int = 50
    #: the workers' consumer session timeout: how soon a killed worker's partitions move
    session_timeout_ms: int = 6000
    #: simulated work per event in the handler (ms), before the event is recorded, so that
    #: a batch takes a while and a kill can land between processing and the commit
    handle_ms: float = 5.0
    #: how long to wait, after publishing, for every acknowledged event to be processed
    drain_timeout_s: float = 180.0
    #: ``bus`` (KafkaBus subscription), ``bus-eos`` (the bus's transactional mode),
    #: ``raw`` (kafka-python poll loop, commit after the batch) or ``unsafe`` (commit
    #: before the batch: loses events, to show the run sees it)
    consumer: str = "bus"
    #: ``bus`` (KafkaBus publish) or ``raw`` (KafkaProducer, flush per batch) publisher
    publisher: str = "bus"
    #: the bus's client library (``bus`` publisher and consumers): ``kafka-python`` or
    #: ``confluent-kafka``; the ``raw`` and ``unsafe`` modes are kafka-python either way
    client: str = "kafka-python"
    #: the fraction of deliveries whose handler raises a retriable error (bus modes)
    fail_rate: float = 0.0
    #: events whose handler always rejects (bus modes): they go to ``<topic>-dlt``
    poison: int = 0
    #: the bus's retry strategy: ``in-place``, ``main-topic`` (the bus's default) or
    #: ``retry-topic`` (:func:`offsetlab.lab.chaos_choice.retry_strategy`)
    retry: str = "main-topic"
    #: ``file`` (each worker's ``.seq`` file) or ``topic`` (``ChaosProcessed`` events
    #: published by the handler, read back read_committed; bus modes only)
    sink: str = "file"
    #: unacknowledged events (the publisher gave up) do not fail the run
    allow_unacked: bool = False
    run_id: str | None = None
    runs_dir: Path | None = None

    def __post_init__(self) -> None:
        for key, minimum in (("events", 1), ("kills", 0), ("broker_restarts", 0), ("workers", 1),
                             ("partitions", 1), ("publish_batch", 1), ("session_timeout_ms", 1000),
                             ("nodes", 1), ("broker_kills", 0), ("poison", 0)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"ChaosConfig.{key} must be an int >= {minimum}, got {value!r}")
        for key in ("publish_s", "drain_timeout_s"):
            value = getattr(self, key)
            if key == "publish_s" and value is None:
                continue
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"ChaosConfig.{key} must be a number > 0 (seconds), got {value!r}")
        if not isinstance(self.handle_ms, int | float) or not 0 <= self.handle_ms <= 1000:
            raise ConfigError(f"ChaosConfig.handle_ms must be 0..1000 (ms), got {self.handle_ms!r}")
        if self.consumer not in CONSUMER_MODES:
            raise ConfigError(f"ChaosConfig.consumer={self.consumer!r}: use one of {CONSUMER_MODES}")
        if self.publisher not in MODES:
            raise ConfigError(f"ChaosConfig.publisher={self.publisher!r}: use one of {MODES}")
        check_client(self.client, "ChaosConfig")
        self._check_faults()

    @property
    def handler_faults(self) -> bool:
        """Whether the handlers fail and reject (``--fail-rate``, ``--poison``): bus consumers
        only; the ``raw`` and ``unsafe`` loops have no retries or dead letters and ignore
        them (the run says so), so the acceptance command runs as the negative control with
        only ``--consumer unsafe`` changed."""
        return self.consumer in BUS_MODES

    @property
    def window_s(self) -> float:
        """The publishing window: ``publish_s``, or by default 30 s, and on a cluster at
        least 20 s per broker fault (kills and restarts), because the faults there go one at
        a time and one took 12-19 s from its start to the node answering again (a 2-core
        machine under load), so that they all fall while the publisher publishes."""
        if self.publish_s is not None:
            return float(self.publish_s)
        faults = self.broker_kills + self.broker_restarts if self.nodes >= 3 else 0
        return max(30.0, 20.0 * faults)

    def _check_faults(self) -> None:
        if self.nodes == 2:
            raise ConfigError("ChaosConfig.nodes=2: use 1 (one broker) or 3 or more (a cluster "
                              "with replication factor 3)")
        if self.broker_kills and self.nodes < 3:
            raise ConfigError(f"--broker-kills {self.broker_kills} needs a cluster (--nodes 3): "
                              "killing the only broker is an outage, not a leader failover")
        rate = self.fail_rate
        if (not isinstance(rate, int | float) or isinstance(rate, bool)
                or not 0 <= rate <= MAX_FAIL_RATE):
            raise ConfigError(f"ChaosConfig.fail_rate must be 0..{MAX_FAIL_RATE}, got {rate!r}")
        if self.poison > self.events:
            raise ConfigError(f"--poison {self.poison} is more than --events {self.events}")
        bus = self.consumer in BUS_MODES
        if self.sink == "topic" and not bus:
            raise ConfigError(f"--sink topic needs a bus consumer (--consumer "
                              f"{' or '.join(BUS_MODES)}): the handler publishes through its bus")
        if self.retry not in RETRY_NAMES:
            raise ConfigError(f"ChaosConfig.retry={self.retry!r}: use one of {RETRY_NAMES}")
        if self.sink not in SINKS:
            raise ConfigError(f"ChaosConfig.sink={self.sink!r}: use one of {SINKS}")
        if self.consumer == "bus-eos" and self.client != "kafka-python":
            raise ConfigError("--consumer bus-eos is kafka-python only (the bus's transactional "
                              f"mode), got --client {self.client}")
        if not isinstance(self.allow_unacked, bool):
            raise ConfigError("ChaosConfig.allow_unacked must be True or False")


@dataclass
class ChaosResult:
    run_id: str
    run_dir: Path
    config: dict[str, Any]
    seed: int
    #: distinct seqs on the main topic as the publisher wrote them (read back)
    produced: int = 0
    #: events whose publish call returned
    acknowledged: int = 0
    #: events the publisher gave up on (never acknowledged)
    unacknowledged: int = 0
    processed: int = 0
    lost: int = 0
    #: extra deliveries per input record (processed count beyond the input records of the
    #: seq), plus dead letters written again in at-least-once modes
    duplicated: int = 0
    #: events processed more than once (any count)
    duplicated_events: int = 0
    #: deliveries beyond the first of every processed seq (written twice included)
    redeliveries: int = 0
    #: seqs the publisher wrote more than once on the main topic
    written_twice: int = 0
    #: dead letters of the same source record beyond the first (at-least-once modes add
    #: them to ``duplicated``)
    dead_letters_again: int = 0
    duplicate_bound: int = 0
    duplicate_bound_reason: str = ""
    processed_unacknowledged: int = 0
    #: poison seqs found among the processed (never allowed)
    poison_processed: int = 0
    failed_deliveries: int = 0
    rejected_deliveries: int = 0
    handler_calls_ok: int = 0
    dead_lettered: int = 0
    dead_letters_expected: int = 0
    #: problems with the dead-letter topic that fail the run (wrong seqs, wrong provenance,
    #: duplicates in the transactional mode)
    dead_letter_problems: list[str] = field(default_factory=list)
    committed_at_end: bool | None = None
    committed_detail: list[str] = field(default_factory=list)
    publish_failures: int = 0
    publisher_rebuilds: int = 0
    publish_failure_log: list[str] = field(default_factory=list)
    lost_sample: list[int] = field(default_factory=list)
    retry_strategy: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    #: every worker process: name, pid, exit status, events it handled
    workers: list[dict[str, Any]] = field(default_factory=list)
    drained: bool = False
    interrupted: bool = False
    #: ``--sink topic`` runs with lost or duplicated events: where the output topic holds a
    #: sample of them, read committed (fresh reader) and uncommitted, and which workers'
    #: handlers published them (their ``.done`` files)
    forensics: dict[str, Any] = field(default_factory=dict)
    #: why the run fails (empty: it passes); filled by the accounting
    failures: list[str] = field(default_factory=list)
    accounted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if (self.failures or not self.accounted) else 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["exit_code"] = self.exit_code
        return data
