"""A failing handler, a clean stop and a restart, on every client (E03's fail01 and E04's fail02
on KafkaJS, confluent-kafka and kafka-python).

One *case* is one client column and one handler: ``messages`` keyed messages ``1``..``n`` in
one partition, member A of a new group handles them in ``style`` (E03: ``batch``, KafkaJS
``eachBatch`` + ``resolveOffset``; E04: ``message``) and commits per ``commit``; message
``fail_value`` fails once and the handler does what ``on_fail`` says (protocol.ON_FAIL). A
is stopped cleanly once it is done:

- ``a_done="marker"`` (E03): after A's first failure a marker ``end-a`` is produced; A is done
  when it handled it (everything before it has been handed out, retries included);
- ``a_done="last"`` (E04): A is done when it handled message ``n`` (its last commit is the one
  after ``n``; a marker would add a commit of its own).

The group's committed offset is read back from the broker after A stopped. Then B (same
client, group and settings, no failure) starts, and once it holds the partition the marker
``end`` is produced; when B handled it, B has been handed everything the group was going to
deliver again. Values, all from recorded events and the broker's committed offset:
``again`` (A's handler calls given a message more than once), ``restart`` (the messages B
handled: handed again after the restart), ``lost`` (messages no member ever handled, although
B read to the end).

Cases run concurrently (:func:`run_cases`: one thread per case, each member started and
stopped in its thread).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.clients.child import ChildMember, Event
from offsetlab.lab.clients.columns import column_label
from offsetlab.lab.clients.conformance_join import member_config, scenario_names
from offsetlab.lab.clients.protocol import HandlerSpec
from offsetlab.lab.raw import committed_offsets, create_topic, produce
from offsetlab.lab.timeline_core import Timeline

__all__ = ["Case", "CaseRun", "END", "END_A", "handled_values", "calls", "given_again",
           "lost", "resumes_at", "run_case", "run_cases", "fail01_cases", "plot_runs"]

END = "end"       # B's marker
END_A = "end-a"   # A's marker (a_done="marker")


@dataclass(frozen=True, kw_only=True)
class Case:
    """One client column and one handler (see the module docstring)."""

    client: str
    group_protocol: str = "classic"
    name: str                       # the variant, e.g. "throw", "message_offset"
    style: str = "batch"
    commit: str = "idiomatic"
    on_fail: str = "throw"
    fail_value: str = "3"
    messages: int = 5
    a_done: str = "marker"          # "marker" | "last"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def column(self) -> str:
        return column_label(self.client, self.group_protocol)

    @property
    def values(self) -> list[str]:
        return [str(i) for i in range(1, self.messages + 1)]


@dataclass(kw_only=True)
class CaseRun:
    """What one case recorded."""

    case: Case
    topic: str
    group: str
    a_events: list[Event]
    b_events: list[Event]
    committed_after_a: dict[int, int]   # the broker's committed offsets after A stopped
    error: str | None = None            # the run did not complete (a wait timed out ...)

    @property
    def column(self) -> str:
        return self.case.column

    def again(self) -> list[str]:
        return given_again(self.a_events, self.case.values)

    def restart(self) -> list[str]:
        return handled_values(self.b_events, self.case.values)

    def lost(self) -> list[str]:
        return lost([self.a_events, self.b_events], self.case.values)

    def resumes_at(self) -> str:
        return resumes_at(self.committed_after_a.get(0), self.case.messages)

    def a_commits(self) -> list[int]:
        return [int(e["offset"]) for e in self.a_events if e.get("event") == "commit"]

    def crashes(self) -> list[tuple[str, Any]]:
        return [(str(e.get("error", "")).split(":", 1)[0], e.get("restart"))
                for e in self.a_events if e.get("event") == "crash"]

    def order(self) -> list[str]:
        """A's handler calls in order (``!``: failed), markers left out."""
        return [str(e.get("value")) + ("!" if e["event"] == "handler_failed" else "")
                for e in calls(self.a_events, self.case.values)]

    def row(self) -> dict[str, Any]:
        return {"client": self.column, "variant": self.case.name, "A's handler calls": self.order(),
                "A's commits": self.a_commits(), "crashes": self.crashes(),
                "committed after A (resumes at)": self.resumes_at(),
                "restart handled": self.restart(), "lost": self.lost(), "error": self.error}


# -- values from recorded events ----------------------------------------------------------------
def calls(events: Sequence[Event], values: Sequence[str]) -> list[Event]:
    """The handler's calls (``handled`` and ``handler_failed``) with one of ``values``."""
    wanted = set(values)
    return [e for e in events if e.get("event") in ("handled", "handler_failed")
            and str(e.get("value")) in wanted]


def handled_values(events: Sequence[Event], values: Sequence[str]) -> list[str]:
    """The sorted distinct ``values`` handled successfully (numeric order)."""
    got = {str(e.get("value")) for e in calls(events, values) if e["event"] == "handled"}
    return sorted(got, key=_order)


def given_again(events: Sequence[Event], values: Sequence[str]) -> list[str]:
    """The sorted ``values`` the handler was given more than once (a failed call counts)."""
    counts = Counter(str(e.get("value")) for e in calls(events, values))
    return sorted((v for v, n in counts.items() if n > 1), key=_order)


def lost(members: Sequence[Sequence[Event]], values: Sequence[str]) -> list[str]:
    """The ``values`` no member handled successfully."""
    done = {v for events in members for v in handled_values(events, values)}
    return [v for v in values if v not in done]


def resumes_at(committed: int | None, messages: int) -> str:
    """A committed offset as the message the group resumes at (message ``o + 1`` sits at
    offset ``o``): ``msg 3``, ``end`` (past message ``messages``: a marker counts as the end)
    or ``none`` (nothing committed)."""
    if committed is None:
        return "none"
    return "end" if committed >= messages else f"msg {committed + 1}"


def _order(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 30, value)


# -- driver -------------------------------------------------------------------------------------
def _done(m: ChildMember, value: str, timeout_s: float) -> None:
    m.wait_for("handled", lambda e: e.get("value") == value, timeout_s=timeout_s)


def run_case(broker: BrokerHandle, case: Case, *, timeline: Timeline | None = None,
             log_dir: Path | str | None = None, wait_s: float = 60.0) -> CaseRun:
    """Run one case (see the module docstring); a wait that times out ends the run early and
    is recorded in ``error`` (its values then rest on what was recorded until then)."""
    slug = _slug(case.name)
    topic, group = scenario_names(f"e0x-{slug}", case.client, case.group_protocol)
    create_topic(broker, topic, 1)
    produce(broker, topic, [(f"k{v}", v) for v in case.values])
    tag = f"{case.client}-{case.group_protocol}-{slug}"
    kw = dict(style=case.style, commit=case.commit, extra=dict(case.extra))
    a = ChildMember(member_config(
        case.client, case.group_protocol, f"{tag}-A", broker, group, topic,
        handler=HandlerSpec(fail_values=[case.fail_value], fail_times=1, on_fail=case.on_fail),
        **kw), timeline, log_dir=log_dir)
    b = ChildMember(member_config(case.client, case.group_protocol, f"{tag}-B", broker,
                                  group, topic, **kw), timeline, log_dir=log_dir)
    committed: dict[int, int] = {}
    error = None
    try:
        a.start()
        if case.a_done == "marker":
            a.wait_for("handler_failed", timeout_s=wait_s)
            produce(broker, topic, [(END_A, END_A)])
            _done(a, END_A, wait_s)
        else:
            _done(a, case.values[-1], wait_s)
        a.stop()
        committed = committed_offsets(broker, group, topic)
        b.start()
        b.wait_for("assigned", lambda e: bool(e.get("partitions")), timeout_s=wait_s)
        produce(broker, topic, [(END, END)])
        _done(b, END, wait_s)
    except Exception as exc:  # noqa: BLE001 - recorded: the cell says the run did not complete
        error = f"{type(exc).__name__}: {exc}"
    finally:
        a.close()
        b.close()
    return CaseRun(case=case, topic=topic, group=group, a_events=list(a.events),
                   b_events=list(b.events), committed_after_a=committed, error=error)


def run_cases(broker: BrokerHandle, cases: Sequence[Case], *, timeline: Timeline | None = None,
              log_dir: Path | str | None = None, wait_s: float = 60.0,
              stagger_s: float = 0.3) -> list[CaseRun]:
    """Every case in its own thread (started ``stagger_s`` apart: 2 cores); results in the
    order of ``cases``."""
    results: list[CaseRun | None] = [None] * len(cases)

    def one(i: int) -> None:
        results[i] = run_case(broker, cases[i], timeline=timeline, log_dir=log_dir, wait_s=wait_s)

    threads = [threading.Thread(target=one, args=(i,), name=f"case-{i}") for i in range(len(cases))]
    for t in threads:
        t.start()
        time.sleep(stagger_s)
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


# -- the section's cases and plot -------------------------------------------------------------
#: E03's variants: on_fail, extra (the KafkaJS-only one sets eachBatchAutoResolve false)
FAIL01 = (("throw", "throw", {}), ("skip", "skip", {}), ("return", "return", {}))
FAIL01_KAFKAJS = (("return, eachBatchAutoResolve false", "return",
                   {"run": {"eachBatchAutoResolve": False}}),)


def fail01_cases(columns: Sequence[tuple[str, str]], *, messages: int = 5,
                 fail_value: str = "3") -> list[Case]:
    """The seed's fail01 on every column: batch style, idiomatic commit, ``fail_value`` fails
    once; variants throw / skip / return, and on KafkaJS return with eachBatchAutoResolve
    false."""
    cases = []
    for client, proto in columns:
        variants = FAIL01 + (FAIL01_KAFKAJS if client == "kafkajs" else ())
        for name, on_fail, extra in variants:
            cases.append(Case(client=client, group_protocol=proto, name=name, style="batch",
                              commit="idiomatic", on_fail=on_fail, fail_value=fail_value,
                              messages=messages, a_done="marker", extra=extra))
    return cases


_SHOWN = {"handled": "consumed", "handler_failed": "failed", "commit": "commit",
          "assigned": "assigned", "revoked": "revoked", "crash": "crash", "seek": "seek",
          "stopped": "stopped"}


def plot_runs(runs: Sequence[CaseRun], timeline: Timeline, *, title: str = "") -> Any:
    """One panel per variant, one lane per member (client column, A or the restarted B) on
    the section's one time axis: handler calls as circles coloured by partition, failures as
    red crosses, commits as ticks, assignments/revocations as strokes."""
    from matplotlib.figure import Figure

    from offsetlab.lab.plots import plot_timeline

    frame = timeline.to_frame()
    frame = frame[frame.what.isin(list(_SHOWN))].copy()
    frame["what"] = frame.what.map(_SHOWN)
    variants: dict[str, dict[str, str]] = {}   # variant -> {who: lane label}
    for r in runs:
        tag = f"{r.case.client}-{r.case.group_protocol}-{_slug(r.case.name)}"
        lanes = variants.setdefault(r.case.name, {})
        lanes[f"{tag}-A"] = f"{r.column} A"
        lanes[f"{tag}-B"] = f"{r.column} B restart"
    lanes_total = sum(len(v) for v in variants.values())
    fig = Figure(figsize=(10.0, 1.2 * len(variants) + 0.42 * lanes_total))
    axes = fig.subplots(len(variants), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (variant, lanes) in zip(axes, variants.items(), strict=True):
        part = frame[frame.who.isin(list(lanes))].copy()
        part["who"] = part.who.map(lanes)
        plot_timeline(part, ax=ax, lanes=list(lanes.values()), annotate_other=False,
                      title=f"{title}{variant}")
    if len(frame):   # one time axis for every panel (each panel sets its own right end)
        axes[0].set_xlim(left=min(0.0, float(frame.t.min())), right=float(frame.t.max()) * 1.03)
    fig.tight_layout()
    return fig


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())[:16]
