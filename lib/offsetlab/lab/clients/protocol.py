"""The JSON-lines protocol between the lab and a member's child process.

**Start.** The parent starts the child and writes one line: :meth:`MemberConfig.to_json`.
The child builds its client, subscribes (``from_beginning``: a new group reads from the
earliest offset) and starts consuming on its own, emitting events as it goes.

**Commands** (stdin, one JSON object a line, key ``cmd``):

============  ===============================================================================
``pause``     ``{"cmd": "pause", "partitions": null | [int, ...]}``: pause the subscribed
              topic's partitions (``null``: every partition the member holds); emits ``pause``
``resume``    the same keys; emits ``resume``
``dependency`` ``{"cmd": "dependency", "up": bool}``: while down, every handled message fails
              with ``DependencyDown`` (and the handler does what ``HandlerSpec.on_fail`` says)
``stop``      leave the group cleanly (the client's close/disconnect), emit ``stopped``, exit 0
============  ===============================================================================

Stdin reaching EOF means the parent is gone: the child exits at once without a clean leave
(as SIGKILL would). A kill is the parent's ``SIGKILL``; the child does nothing for it.

**Events** (stdout, one JSON object a line): every event has ``event`` (one of
:data:`EVENTS`), ``at`` (the child's wall clock, epoch seconds, float) and ``client``; other
keys as below. Partitions are lists of ``[topic, partition]``. Anything the child prints that
is not such a line is a defect of the child (its logs go to stderr).

=================  ===========================================================================
``ready``          the process is up and the client object exists (before subscribing)
``run_called``     just before the call that starts consuming (KafkaJS ``consumer.run()``;
                   Python: the first ``poll()``/``consume()``)
``run_returned``   KafkaJS: the awaited ``run()`` resolved. Python: the first ``poll()`` that
                   returned after the member held its first assignment returned (``records``:
                   how many it returned)
``join``           the client's own report of a completed group join: ``generation`` (None
                   where the client does not give it: KafkaJS's GROUP_JOIN has none),
                   ``member_id``, ``leader`` (bool or None), ``join_s`` (the client's own join
                   duration where it exposes one, else None), ``partitions``
``assigned``       partitions added to this member (``partitions``)
``revoked``        partitions taken away in an orderly rebalance (``partitions``)
``lost``           partitions lost without a revoke (``partitions``)
``handled``        the handler finished one message: ``topic``, ``partition``, ``offset``,
                   ``key``, ``value`` (text), ``attempt`` (1 on the first delivery to this
                   process)
``handler_failed`` the handler raised: ``topic``, ``partition``, ``offset``, ``value``,
                   ``error`` (``"ClassName: message"``)
``pause``/``resume`` ``partitions`` now paused / resumed (also when the handler paused itself)
``seek``           the member moved its position back: ``topic``, ``partition``, ``offset``
``commit``         an offset commit the broker accepted: ``topic``, ``partition``, ``offset``
                   (the committed value, i.e. the next offset to read)
``commit_failed``  ``error``
``heartbeat``      KafkaJS HEARTBEAT (the Python clients do not expose heartbeats)
``error``          anything the client raised or reported outside a handler: ``error``
                   (``"ClassName: message"``), ``where`` (``start``, ``poll``, ``error_cb``,
                   ``commit``...), ``fatal`` (bool)
``crash``          KafkaJS's CRASH instrumentation event: ``error``, ``restart`` (bool: whether
                   KafkaJS will restart the consumer), ``group_id``
``stopped``        the client closed after ``stop`` (``clean``: True) or after a fatal error
``rebalancing``    KafkaJS REBALANCING (its fetch loop saw the group rebalance and rejoins):
                   ``member_id``, ``group_id``
``consumer_stop``  KafkaJS STOP (its runner stopped: on ``stop`` and before a crash's restart)
``disconnect``     KafkaJS DISCONNECT (the consumer disconnected, also after a crash)
``request_timeout`` KafkaJS REQUEST_TIMEOUT: ``broker``, ``api``, ``correlation_id``
=================  ===========================================================================

**KafkaJS member** (``kafkajs/member.js``). ``ready`` has ``kafkajs`` and ``node`` (versions);
``heartbeat`` has ``member_id`` and ``generation`` (KafkaJS's HEARTBEAT gives it). ``join``
has ``generation`` None, ``group_protocol`` (the assigner's name) and ``paused`` (KafkaJS's
``consumer.paused()`` as the join completes: a pause does not survive KafkaJS's restart after
a crash); KafkaJS's rebalancing is eager and has no revoke callback, so
``assigned``/``revoked`` are the difference between one GROUP_JOIN's assignment and the
previous one's; a ``disconnect`` (on ``stop``, and on a crash before KafkaJS restarts the
consumer, which leaves the group) is followed by ``revoked`` of everything held (``by``:
``disconnect``). ``crash`` also has ``retry_count``. ``run_returned`` has ``returned``: what ``connect()``,
``subscribe()`` and ``run()`` resolved to (``{"connect": "undefined", ...}``: ``undefined``,
``null`` or the value's ``typeof``). ``pause``/``resume`` carry ``by``
(``command`` or ``handler``) and, for ``partitions`` null, ``topics`` (KafkaJS pauses the
whole topic, including partitions assigned later). ``extra`` may hold ``{"kafka": {...},
"retry": {...}, "consumer": {...}, "run": {...}}``, merged into the options of ``new
Kafka()``, its ``retry`` (which the consumer inherits), ``kafka.consumer()`` and
``consumer.run()``. KafkaJS 2.2.4's ``kafka.consumer()`` has its own default ``retry``
(``{retries: 5}``) that overrides the client's ``retries`` for the consumer (its runner's
retries of a failing handler): set that one with ``{"consumer": {"retry": {...}}}``.
``on_fail`` ``pause_and_seek`` is refused (a fatal ``error`` at start): KafkaJS's idiom is
``pause_and_throw``. ``on_fail`` ``return`` with ``style`` ``batch`` returns from ``eachBatch``
at the failure (no throw; KafkaJS's ``eachBatchAutoResolve``, default true, or
``extra.run.eachBatchAutoResolve`` decides what is resolved); ``skip`` neither resolves nor
commits the failed message. Stdin EOF or a changed parent pid (checked every 500 ms) exits with status
3; a fatal ``error`` (start, unhandled rejection) with 1.

**Python members** (``pymember``: kafka-python, confluent-kafka). ``pause``/``resume`` carry
``by`` (``command`` or ``handler``) as KafkaJS's do; ``handler_failed`` also has ``attempt``;
``error`` from confluent-kafka's ``error_cb`` has ``code`` (the error's name) and
``suppressed`` (identical non-fatal reports folded into it: at most one event per code a
second); ``commit``/``commit_failed`` of auto-commits come from the clients' commit callbacks
(``commit_failed`` then has ``where``: ``auto``); ``assigned``/``revoked``/``lost`` are not
emitted for an empty partition list (``join`` is, on every assignment callback). Stdin EOF
exits with status 3. Details: :mod:`offsetlab.lab.clients.pymember_loop` and the two adapter
modules.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CLIENTS", "GROUP_PROTOCOLS", "COMMANDS", "EVENTS", "STYLES", "COMMITS", "ON_FAIL",
           "HandlerSpec", "MemberConfig"]

CLIENTS = ("kafka-python", "kafkajs", "confluent-kafka")
GROUP_PROTOCOLS = ("classic", "consumer")
COMMANDS = ("pause", "resume", "dependency", "stop")
EVENTS = ("ready", "run_called", "run_returned", "join", "assigned", "revoked", "lost", "handled",
          "handler_failed", "pause", "resume", "seek", "commit", "commit_failed", "heartbeat",
          "error", "crash", "stopped", "rebalancing", "consumer_stop", "disconnect",
          "request_timeout")
#: ``message``: one handler call per message (KafkaJS ``eachMessage``; Python: per record of a
#: poll); ``batch``: one handler call per fetched batch (KafkaJS ``eachBatch`` with
#: ``resolveOffset`` per message; Python: the records of one ``poll()``)
STYLES = ("message", "batch")
#: ``idiomatic``: the client's own way (KafkaJS auto-commit of resolved offsets; kafka-python
#: ``commit()`` after each message; confluent-kafka ``commit(message)``);
#: ``message_offset``: commit ``message.offset`` after each message (the seed's mistake);
#: ``offset_plus_one``: commit ``message.offset + 1`` explicitly after each message;
#: ``auto``: the client's auto-commit at its defaults; ``none``: never commit
COMMITS = ("idiomatic", "message_offset", "offset_plus_one", "auto", "none")
#: what a failing handler does: ``throw`` (raise into the client: KafkaJS retries/restarts,
#: Python members record ``handler_failed`` and seek back to the message);
#: ``pause_and_throw`` (KafkaJS docs' pattern: ``pause()`` the topic, then throw);
#: ``pause_and_seek`` (Python: pause the partition and seek back to the failed record);
#: ``skip`` (record the failure, go on: the failed message is neither resolved nor committed);
#: ``return`` (``style`` ``batch``: leave the batch at the failure without throwing and without
#: a seek: KafkaJS returns from ``eachBatch``, Python members drop the rest of the partition's
#: records of that poll; ``style`` ``message``: as ``skip``)
ON_FAIL = ("throw", "pause_and_throw", "pause_and_seek", "skip", "return")


@dataclass(kw_only=True)
class HandlerSpec:
    """What the member's handler does with each message."""

    sleep_s: float = 0.0              # every message sleeps this long (no poll meanwhile)
    block_first_s: float = 0.0        # the first message handled sleeps this long
    fail_values: list[str] = field(default_factory=list)  # message values whose handling raises
    fail_times: int = 1               # ... this many times each (-1: always)
    on_fail: str = "throw"
    #: after ``pause_and_throw`` / ``pause_and_seek`` the member resumes the partition by
    #: itself this many seconds later (the KafkaJS docs' ``setTimeout(resume, retryAfter)``),
    #: and the message is delivered again
    retry_after_s: float = 1.0
    dependency_up: bool = True        # the start state of the dependency (command ``dependency``)

    def __post_init__(self) -> None:
        if self.on_fail not in ON_FAIL:
            raise ValueError(f"on_fail must be one of {ON_FAIL}, not {self.on_fail!r}")


@dataclass(kw_only=True)
class MemberConfig:
    """One member: its client and the client settings the experiment chose.

    ``None`` for a timeout means the client's own default (which differs: KafkaJS 30 s
    session, kafka-python 3.x 45 s, librdkafka 45 s: the runs record what each used); ``extra`` is passed to the client's
    configuration as it is (keys in the client's own spelling).
    """

    client: str
    who: str
    bootstrap: str
    group: str
    topics: list[str]
    group_protocol: str = "classic"
    from_beginning: bool = True
    session_timeout_ms: int | None = None
    heartbeat_interval_ms: int | None = None
    max_poll_interval_ms: int | None = None      # KafkaJS has none: must stay None there
    rebalance_timeout_ms: int | None = None      # KafkaJS only
    group_instance_id: str | None = None          # static membership (not on KafkaJS)
    style: str = "message"
    commit: str = "idiomatic"
    handler: HandlerSpec = field(default_factory=HandlerSpec)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.client not in CLIENTS:
            raise ValueError(f"client must be one of {CLIENTS}, not {self.client!r}")
        if self.group_protocol not in GROUP_PROTOCOLS:
            raise ValueError(f"group_protocol must be one of {GROUP_PROTOCOLS}")
        if self.group_protocol == "consumer" and self.client != "confluent-kafka":
            raise ValueError(f"{self.client} does not speak the consumer group protocol (KIP-848)")
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, not {self.style!r}")
        if self.commit not in COMMITS:
            raise ValueError(f"commit must be one of {COMMITS}, not {self.commit!r}")
        if self.client == "kafkajs" and self.max_poll_interval_ms is not None:
            raise ValueError("KafkaJS has no max poll interval")
        if self.client == "kafkajs" and self.group_instance_id is not None:
            raise ValueError("KafkaJS 2.2 has no static membership (group.instance.id)")
        if isinstance(self.handler, dict):
            self.handler = HandlerSpec(**self.handler)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> MemberConfig:
        return cls(**json.loads(text))
