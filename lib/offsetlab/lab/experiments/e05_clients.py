"""E05 on every client column: the seed's fail03 at each client's default retry.

One partition, ``n_messages`` messages ``0``..``n-1`` (``2`` is the seed's "message 3");
the handler (``eachMessage`` on KafkaJS, one call per record on the Python clients) fails
message ``fail_value`` ``fail_times`` times and then succeeds; a failure throws into the
client (``on_fail`` ``throw``). Commit: the client's idiom (KafkaJS ``resolveOffset`` and
its auto-commit, kafka-python ``commit()``, confluent-kafka ``commit(message)``), plus KafkaJS
once more with ``commitOffsets(message.offset)`` after each message (the seed's first
version, auto-commit off) and once with ``new Kafka({retry: {retries: 2}})`` (the client-level
retry the seed's "configured on the client" points at). Nothing is re-produced: this is the client's own retry, which the
seed's "After 5 retries (configured on the client ...)" met.

What each client does with the throw is its own: KafkaJS's runner retries the message with
the consumer's ``retry`` (KafkaJS 2.2.4's ``kafka.consumer()`` default ``{retries: 5}``,
exponential backoff from 300 ms) and then crashes (CRASH, ``restart`` when the error is
retriable) and restarts as a new member; the Python members have no handler retry: they seek
back to the failed record and the next poll delivers it again at once. All columns run at
once, each until it handled the failing message and the last one (or ``cap_s`` after its
``ready``). Values: :mod:`offsetlab.lab.experiments.e05_clients_findings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.clients.child import Event
from offsetlab.lab.clients.columns import column_label
from offsetlab.lab.clients.conformance_join import warm_coordinator
from offsetlab.lab.clients.protocol import HandlerSpec, MemberConfig
from offsetlab.lab.experiments.clients_section import MemberRun, run_concurrently, run_member
from offsetlab.lab.raw import create_topic, produce, unique
from offsetlab.lab.timeline_core import Timeline

__all__ = ["ClientParams", "SEED_COMMIT", "CLIENT_RETRIES", "CLIENT_RETRY", "variants", "configs",
           "run_clients"]

#: the extra KafkaJS variants' label suffixes: ``commitOffsets(message.offset)`` per message
#: (the seed's first version), and the client-level retry the seed thought it configured
#: (``new Kafka({retry: {retries: CLIENT_RETRIES}})``; the consumer keeps its own default)
SEED_COMMIT = "commit message.offset"
CLIENT_RETRIES = 2
CLIENT_RETRY = f"new Kafka() retry.retries={CLIENT_RETRIES}"


@dataclass(frozen=True, kw_only=True)
class ClientParams:
    """The section's settings (fast profile)."""

    n_messages: int = 5
    fail_value: str = "2"
    #: above KafkaJS's default consumer retries (5: 6 deliveries before the crash), so
    #: KafkaJS crashes once and the restarted consumer's first delivery succeeds
    fail_times: int = 6
    cap_s: float = 45.0


def variants(columns: Sequence[tuple[str, str]]) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(label, client, group_protocol, commit, extra) of every member: each column with its
    idiomatic commit; KafkaJS again with ``message_offset``, and again with the client-level
    ``retry`` of ``new Kafka()`` set to :data:`CLIENT_RETRIES` retries."""
    out: list[tuple[str, str, str, str, dict[str, Any]]] = []
    for client, proto in columns:
        lab = column_label(client, proto)
        out.append((lab, client, proto, "idiomatic", {}))
        if client == "kafkajs":
            out.append((f"{lab}, {SEED_COMMIT}", client, proto, "message_offset", {}))
            out.append((f"{lab}, {CLIENT_RETRY}", client, proto, "idiomatic",
                        {"retry": {"retries": CLIENT_RETRIES}}))
    return out


def configs(broker: BrokerHandle, columns: Sequence[tuple[str, str]],
            params: ClientParams) -> dict[str, MemberConfig]:
    """Every member's config by label; makes and fills one topic per member."""
    out = {}
    for i, (lab, client, proto, commit, extra) in enumerate(variants(columns)):
        tag = f"{client}-{proto}-{commit}-{i}"
        topic = create_topic(broker, unique(f"e05c-{tag}"), 1)
        produce(broker, topic, [(f"k{i}", str(i)) for i in range(params.n_messages)])
        out[lab] = MemberConfig(
            client=client, who=f"fail03 {lab}", bootstrap=broker.bootstrap_servers,
            group=unique(f"e05c-{tag}"), topics=[topic], group_protocol=proto, commit=commit,
            extra=extra,
            handler=HandlerSpec(fail_values=[params.fail_value], fail_times=params.fail_times,
                                on_fail="throw"))
    return out


def _done(fail_value: str, last: str, events: Sequence[Event]) -> bool:
    handled = {e.get("value") for e in events if e.get("event") == "handled"}
    return fail_value in handled and last in handled


def run_clients(broker: BrokerHandle, columns: Sequence[tuple[str, str]], params: ClientParams,
                timeline: Timeline | None = None, *,
                log_dir: Path | str | None = None) -> dict[str, MemberRun]:
    """Run fail03 on every member at once; the runs by label."""
    warm_coordinator(broker)
    until = partial(_done, params.fail_value, str(params.n_messages - 1))
    calls = {lab: partial(run_member, cfg, until, params.cap_s, timeline=timeline, log_dir=log_dir)
             for lab, cfg in configs(broker, columns, params).items()}
    return run_concurrently(calls)
