"""The conformance matrix's commit and failure rows: ``commit_message_offset_rereads``,
``idiomatic_commit_rereads``, ``batch_failure_redelivered`` and ``broker_down_at_start``.

As in :mod:`offsetlab.lab.clients.conformance_join`: a pure function per row computes the
value from the members' recorded events, a driver runs the scenario and returns the cell.

- The two commit rows: ``messages`` messages in one partition; member A handles them,
  committing after each message (``message_offset``: ``message.offset``, the seed's mistake;
  ``idiomatic``: the client's own way), and stops cleanly. The broker's committed offset is
  read back. B (same group, same commit mode) starts; once B holds the partition an end
  marker is produced, and when B handled it, everything B was going to read again before it
  has been handled (one partition keeps order). Value: how many of the first messages B
  handled again.
- ``batch_failure_redelivered``: five messages ``1``..``5`` in one partition, handled in the
  client's batch idiom (KafkaJS ``eachBatch`` + ``resolveOffset``; Python: the records of
  one poll), message ``3`` fails once and the handler throws. After the first failure an end
  marker is produced; when it was handled, value: the sorted values handled more than once.
- ``broker_down_at_start``: one member against a port where nothing listens: value is the
  class (or librdkafka error code) name of the first ``error``/``crash`` event, seconds until
  it in the evidence; ``nothing within N s`` when none came before the cap.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offsetlab.brokers import BrokerHandle
from offsetlab.brokers.process import free_port
from offsetlab.lab.clients.child import ChildMember, Event, MemberTimeout
from offsetlab.lab.clients.conformance_join import (
    error_name,
    make_cell,
    member_config,
    scenario_names,
)
from offsetlab.lab.clients.matrix import Cell
from offsetlab.lab.clients.protocol import HandlerSpec, MemberConfig
from offsetlab.lab.raw import committed_offsets, create_topic, produce
from offsetlab.lab.timeline_core import Timeline

__all__ = ["CommitParams", "END", "rereads", "deliveries", "redelivered", "retry_after", "first_failure", "run_commit_rereads",
           "run_commit_message_offset_rereads", "run_idiomatic_commit_rereads",
           "run_batch_failure_redelivered", "run_broker_down_at_start"]

END = "end"  # the marker's value


@dataclass(frozen=True, kw_only=True)
class CommitParams:
    """The commit rows' settings (fast profile; they need no session timeouts)."""

    messages: int = 5
    fail_value: str = "3"
    wait_s: float = 60.0           # generous: a restart, a KafkaJS retry
    broker_down_cap_s: float = 60.0


# -- values from recorded events --------------------------------------------------------------
def _handled(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if e.get("event") == "handled" and e.get("value") != END]


def rereads(b_events: Sequence[Event]) -> int:
    """How many messages (not the end marker) the restarted member handled: each was
    handled before, by the member that stopped."""
    return len({(e.get("partition"), e.get("offset")) for e in _handled(b_events)})


def deliveries(events: Sequence[Event]) -> list[Event]:
    """The handler's calls: ``handled`` and ``handler_failed`` events (not the end marker)."""
    return [e for e in events if e.get("event") in ("handled", "handler_failed")
            and e.get("value") != END]


def redelivered(events: Sequence[Event]) -> list[str]:
    """The sorted values (not the end marker) the handler was given more than once (a
    failed call counts: the message that failed and came back is in the list)."""
    counts = Counter(str(e.get("value")) for e in deliveries(events))
    return sorted(v for v, n in counts.items() if n > 1)


def retry_after(events: Sequence[Event]) -> float | None:
    """Seconds from the first failed handler call to the next call with the same message."""
    calls = deliveries(events)
    first = next((i for i, e in enumerate(calls) if e["event"] == "handler_failed"), None)
    if first is None:
        return None
    again = next((e for e in calls[first + 1:] if e.get("offset") == calls[first].get("offset")
                  and e.get("partition") == calls[first].get("partition")), None)
    return None if again is None else round(float(again["at"]) - float(calls[first]["at"]), 3)


def first_failure(events: Sequence[Event], spawned_at: float) -> tuple[str, float] | None:
    """The first ``error``/``crash`` event: (its librdkafka ``code`` or its error's class
    name, seconds after the
    member's ``ready`` event, or after ``spawned_at`` (wall time) when the client failed
    before it said ready); None when there is none."""
    ready = next((float(e["at"]) for e in events if e.get("event") == "ready"), spawned_at)
    for e in events:
        if e.get("event") in ("error", "crash"):
            name = str(e.get("code") or error_name(e.get("error")))
            return name, round(float(e["at"]) - ready, 3)
    return None


# -- drivers ------------------------------------------------------------------------------------
def _marker_handled(m: ChildMember, timeout_s: float) -> None:
    m.wait_for("handled", lambda e: e.get("value") == END, timeout_s=timeout_s)


def run_commit_rereads(broker: BrokerHandle, client: str, group_protocol: str, params: CommitParams,
                       *, commit: str, timeline: Timeline | None = None,
                       log_dir: Path | str | None = None,
                       measures: dict[str, Any] | None = None) -> Cell:
    """A commits with ``commit`` after each message and stops; B restarts: rereads."""
    behaviour = ("commit_message_offset_rereads" if commit == "message_offset"
                 else "idiomatic_commit_rereads")
    topic, group = scenario_names("cm" if commit == "message_offset" else "ci", client, group_protocol)
    create_topic(broker, topic, 1)
    n = params.messages
    produce(broker, topic, [(f"k{i}", str(i)) for i in range(1, n + 1)])
    tag = f"{client}-{group_protocol}-{commit}"
    configs = [member_config(client, group_protocol, f"{tag}-{w}", broker, group, topic,
                             commit=commit) for w in ("a", "b")]
    a, b = (ChildMember(c, timeline, log_dir=log_dir) for c in configs)
    committed: dict[int, int] = {}
    try:
        a.start()
        a.wait_for("handled", lambda e: e.get("value") == str(n), timeout_s=params.wait_s)
        a.stop()
        committed = committed_offsets(broker, group, topic)
        b.start()
        b.wait_for("assigned", lambda e: bool(e.get("partitions")), timeout_s=params.wait_s)
        produce(broker, topic, [("end", END)])
        _marker_handled(b, params.wait_s)
    finally:
        a.close()
        b.close()
    value = rereads(b.events)
    again = sorted(int(e["offset"]) for e in _handled(b.events))
    commits = [e.get("offset") for e in a.events if e.get("event") == "commit"]
    if measures is not None:
        measures.update(value=value, committed=committed.get(0), messages=n)
    ev = (f"A handled offsets 0..{n - 1}, its commit events {commits}; broker's committed offset "
          f"after A stopped: {committed.get(0, 'none')}; B handled again offsets {again}; "
          f"group {group}")
    return make_cell(behaviour, client, group_protocol, broker, value, ev)


def run_commit_message_offset_rereads(broker: BrokerHandle, client: str, group_protocol: str,
                                      params: CommitParams, **kw: Any) -> Cell:
    return run_commit_rereads(broker, client, group_protocol, params, commit="message_offset", **kw)


def run_idiomatic_commit_rereads(broker: BrokerHandle, client: str, group_protocol: str,
                                 params: CommitParams, **kw: Any) -> Cell:
    return run_commit_rereads(broker, client, group_protocol, params, commit="idiomatic", **kw)


def run_batch_failure_redelivered(broker: BrokerHandle, client: str, group_protocol: str,
                                  params: CommitParams, *, timeline: Timeline | None = None,
                                  log_dir: Path | str | None = None,
                                  measures: dict[str, Any] | None = None) -> Cell:
    topic, group = scenario_names("bf", client, group_protocol)
    create_topic(broker, topic, 1)
    produce(broker, topic, [(f"k{i}", str(i)) for i in range(1, params.messages + 1)])
    cfg = member_config(client, group_protocol, f"{client}-{group_protocol}-batch", broker, group,
                        topic, style="batch", commit="idiomatic",
                        handler=HandlerSpec(fail_values=[params.fail_value], fail_times=1,
                                            on_fail="throw"))
    m = ChildMember(cfg, timeline, log_dir=log_dir)
    try:
        m.start()
        m.wait_for("handler_failed", timeout_s=params.wait_s)
        produce(broker, topic, [("end", END)])
        _marker_handled(m, params.wait_s)
    finally:
        m.close()
    value = redelivered(m.events)
    order = [str(e.get("value")) + ("!" if e["event"] == "handler_failed" else "")
             for e in deliveries(m.events)]
    failed = [str(e.get("value")) for e in m.events if e.get("event") == "handler_failed"]
    crashes = [(error_name(e.get("error")), e.get("restart")) for e in m.events
               if e.get("event") == "crash"]
    retry = retry_after(m.events)
    if measures is not None:
        measures.update(value=value, handled_order=order, crashes=len(crashes), retry_s=retry)
    ev = (f"handler calls in order {order} (! failed); failed {failed}; the failed message "
          f"came back {retry} s later; crash events {crashes or 'none'}; "
          f"group {group}")
    return make_cell("batch_failure_redelivered", client, group_protocol, broker, value, ev)


def down_config(client: str, group_protocol: str, bootstrap: str, group: str) -> MemberConfig:
    return MemberConfig(client=client, who=f"{client}-{group_protocol}-down", bootstrap=bootstrap,
                        group=group, topics=[f"{group}-t"], group_protocol=group_protocol)


def run_broker_down_at_start(broker: BrokerHandle, client: str, group_protocol: str,
                             params: CommitParams, *, timeline: Timeline | None = None,
                             log_dir: Path | str | None = None,
                             measures: dict[str, Any] | None = None) -> Cell:
    """A member whose bootstrap is a free port (nothing listens): what it reports first."""
    bootstrap = f"127.0.0.1:{free_port()}"
    _, group = scenario_names("down", client, group_protocol)
    m = ChildMember(down_config(client, group_protocol, bootstrap, group), timeline,
                    log_dir=log_dir)
    spawned = time.time()
    try:
        m.start()
        deadline = time.monotonic() + params.broker_down_cap_s
        while time.monotonic() < deadline and first_failure(m.events, spawned) is None and m.alive:
            time.sleep(0.1)
        try:  # the child may exit right after its error: let its last events arrive
            m.wait_for("stopped", timeout_s=0.5)
        except MemberTimeout:
            pass
    finally:
        m.close()
    first = first_failure(m.events, spawned)
    kinds = [e.get("event") for e in m.events]
    if first is None:
        value: str = f"nothing within {params.broker_down_cap_s:g} s"
        ev = f"bootstrap {bootstrap} (no listener); events {kinds}"
        secs = None
    else:
        value, secs = first
        err = next(e for e in m.events if e.get("event") in ("error", "crash"))
        since = ("ready" if any(e.get("event") == "ready" for e in m.events)
                 else "process start (no ready: the client's constructor failed)")
        ev = (f"first {err['event']} {secs} s after the member's {since} "
              f"(where {err.get('where')}, fatal {err.get('fatal')}, restart "
              f"{err.get('restart')}): {str(err.get('error'))[:160]}; bootstrap {bootstrap}; "
              f"events {sorted(set(map(str, kinds)))}")
    if measures is not None:
        measures.update(value=value, seconds=secs, cap_s=params.broker_down_cap_s)
    return make_cell("broker_down_at_start", client, group_protocol, broker, value, ev)
