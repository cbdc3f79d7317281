"""Running one member per client column at once, for the notebooks' sections "The same on
KafkaJS and confluent-kafka" (E02, E05).

:func:`run_member` starts one :class:`~offsetlab.lab.clients.child.ChildMember`, waits until
its ``until`` accepts its events, the child exits or ``cap_s`` passes, and stops it on every
exit path; :func:`run_concurrently` runs such calls in threads, each member started and
stopped in its own thread (``PR_SET_PDEATHSIG`` fires when the starting thread exits).
:func:`plot_members` draws the members' events on one time axis, one lane per member.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offsetlab.lab.clients.child import ChildMember, Event
from offsetlab.lab.clients.columns import column_label
from offsetlab.lab.clients.protocol import MemberConfig
from offsetlab.lab.timeline_core import Timeline

__all__ = ["MemberRun", "run_member", "run_concurrently", "plot_members", "label"]

#: event kinds drawn with the timeline plot's own markers
_DRAWN_AS = {"handled": "consumed", "handler_failed": "failed"}
_LEFT_OUT = ("ready", "run_called", "seek", "heartbeat")


def label(config: MemberConfig) -> str:
    """The column label of a member's config (``confluent-kafka (consumer)`` ...)."""
    return column_label(config.client, config.group_protocol)


@dataclass
class MemberRun:
    """What one member did: its events (the child's, ``at`` its wall clock), when it was
    spawned (wall clock), its exit status, and whether it was still running at the cap."""

    config: MemberConfig
    events: list[Event] = field(default_factory=list)
    spawned_at: float = 0.0
    exit_code: int | None = None
    capped: bool = False           # still running (and ``until`` not satisfied) at the cap

    @property
    def label(self) -> str:
        return label(self.config)


def run_member(config: MemberConfig, until: Callable[[Sequence[Event]], bool], cap_s: float, *,
               timeline: Timeline | None = None, log_dir: Path | str | None = None,
               on_running: Callable[[ChildMember], None] | None = None,
               start_s: float = 30.0) -> MemberRun:
    """Run one member until ``until(events)`` is true, the child exits, or ``cap_s`` passes
    after its ``ready`` event;
    then stop it (clean ``stop``, SIGKILL after a grace period). ``on_running`` is called once
    with the member right after its start (e.g. to produce once it is up)."""
    member = ChildMember(config, timeline, log_dir=log_dir)
    run = MemberRun(config, spawned_at=time.time())
    try:
        member.start()
        if on_running is not None:
            on_running(member)
        # the cap counts from the member's ``ready`` (its client exists): starting a dozen
        # children at once on two cores takes seconds; a member that never says ready (its
        # constructor failed, or it is still starting) gets ``start_s`` more
        spawned = time.monotonic()
        deadline = spawned + start_s + cap_s
        ready = False
        while True:
            said = member.seen("ready") if not ready else []
            if said:
                ready = True
                deadline = time.monotonic() + cap_s - max(0.0, time.time() - float(said[0]["at"]))
            if until(list(member.events)):
                break
            if not member.alive:
                break
            if time.monotonic() >= deadline:
                run.capped = True
                break
            time.sleep(0.05)
        if not member.alive:  # let its last lines arrive
            time.sleep(0.3)
    finally:
        member.close(timeout_s=15.0)
        run.events = list(member.events)
        run.exit_code = member.exit_code
    return run


def run_concurrently(calls: Mapping[str, Callable[[], MemberRun]]) -> dict[str, MemberRun]:
    """Run each call in its own thread; returns the runs by key. When a call raises, the
    others still finish, then a ``RuntimeError`` names the first failure."""
    out: dict[str, MemberRun] = {}
    errors: dict[str, BaseException] = {}

    def work(key: str, call: Callable[[], MemberRun]) -> None:
        try:
            out[key] = call()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors[key] = exc

    threads = [threading.Thread(target=work, args=(k, c), name=f"section-{k}", daemon=True)
               for k, c in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        key, exc = next(iter(errors.items()))
        raise RuntimeError(f"{len(errors)} member run(s) failed, first {key!r}: {exc!r}") from exc
    return {k: out[k] for k in calls}


def plot_members(timeline: Timeline, lanes: Sequence[str], *, title: str,
                 label_offsets: bool = True) -> Any:
    """The members' events on one time axis, one lane per member (``who``): a handled message
    is drawn as consumed (labelled with its offset), a failed handler call as a failure (red
    cross); the start-up events (``ready``, ``run_called``), seeks and heartbeats are left out
    (they are in the saved timeline)."""
    from offsetlab.lab.plots import plot_timeline

    frame = timeline.to_frame()
    frame = frame[frame.who.isin(list(lanes)) & ~frame.what.isin(_LEFT_OUT)].copy()
    frame["what"] = frame.what.replace(_DRAWN_AS)
    return plot_timeline(frame, lanes=list(lanes), label_offsets=label_offsets, title=title,
                         annotate_other=True)
