"""E07's view from the broker: who the group coordinator lists, and waiting for a group
that has formed (with a restart when kafka-python never lets it form).

:class:`GroupWatcher` asks ``describe_groups`` a few times a second and writes membership
intervals on a timeline; :func:`settle` waits until both members hold partitions and the
broker lists both in a Stable group; :class:`GroupNeverSettled` is raised when that does
not happen in time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.deadline import Deadline
from offsetlab.lab.timeline import Timeline

__all__ = ["listed", "GroupWatcher", "GroupNeverSettled", "settle"]


def listed(member: str) -> str:
    """The lane of ``member``'s membership as the broker lists it (:class:`GroupWatcher`)."""
    return f"{member} (listed)"


class GroupWatcher(threading.Thread):
    """The broker's view of the group, asked every ``every_s`` with ``describe_groups``.

    Records on ``timeline``: a ``group`` row on lane ``broker`` whenever the group's state or
    member list changes (detail: state, sorted client ids), and a ``member`` interval on lane
    ``"<member> (listed)"`` (:func:`listed`) while the broker lists it: group membership over
    time as the coordinator sees it, not as the client believes it.
    """

    def __init__(self, broker: BrokerHandle, group: str, timeline: Timeline, *,
                 every_s: float = 0.2, lanes: dict[str, str] | None = None) -> None:
        super().__init__(name=f"e07-watch-{group}", daemon=True)
        self.group, self.timeline, self.every_s = group, timeline, every_s
        self.lanes = dict(lanes or {})  # client id -> lane, where they differ
        self._admin = KafkaAdminClient(**broker.clients())
        self._done = threading.Event()
        self.views: list[tuple[float, str, tuple[str, ...]]] = []  # (t, state, members)
        #: why the broker's view could not be read (then the watcher stops asking), or None
        self.unavailable: str | None = None

    def run(self) -> None:
        last: tuple[str, tuple[str, ...]] | None = None
        try:
            while not self._done.is_set():
                try:
                    info = self._admin.describe_groups([self.group]).get(self.group, {})
                except KafkaError:
                    info = {}
                except Exception as exc:  # noqa: BLE001 - an answer kafka-python cannot parse
                    # (Tansu 0.6 answers authorized operations kafka-python 3.0.12 rejects)
                    self.unavailable = f"{type(exc).__name__}: {exc}"
                    self.timeline.record("broker", "group", detail={"unavailable": self.unavailable})
                    return
                state = str(info.get("group_state", "unknown"))
                members = tuple(sorted(self.lanes.get(m["client_id"], m["client_id"])
                                       for m in info.get("members", ())))
                if (state, members) != last:
                    t = self.timeline.now()
                    before = set(last[1]) if last else set()
                    for who in sorted(set(members) - before):
                        self.timeline.record(listed(who), "member", phase="start")
                    for who in sorted(before - set(members)):
                        self.timeline.record(listed(who), "member", phase="end")
                    self.timeline.record("broker", "group",
                                         detail={"state": state, "members": list(members)})
                    self.views.append((t, state, members))
                    last = (state, members)
                self._done.wait(self.every_s)
            for who in last[1] if last else ():  # close the intervals still open
                self.timeline.record(listed(who), "member", phase="end", detail={"watch": "ended"})
        finally:
            self._admin.close()

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


class GroupNeverSettled(TimeoutError):
    """The group did not form within ``settle_timeout_s`` (before anything was produced).

    Seen with kafka-python 3.0.12 now and then: the group leader never completes its
    JoinGroup/SyncGroup round when the topic's metadata arrives during it, stops
    heartbeating, is evicted, and does not rejoin. The scenarios then start again on fresh
    topic and group names (:func:`offsetlab.lab.experiments.e07_core.retrying`); ``ScenarioResult.join_retries`` counts it.
    """


def settle(holds: Callable[[], list[list[int]]], watcher: GroupWatcher, *, partitions: int,
           timeout_s: float, errors: dict[str, str], name: str, spell_s: float = 1.0) -> None:
    """Until every member holds partitions (together ``partitions``) and the broker lists
    them all in a Stable group (unless the watcher cannot read the group), unchanged for
    ``spell_s``; :class:`GroupNeverSettled` after ``timeout_s``; ``RuntimeError`` as soon as
    a member recorded an error in ``errors``."""
    deadline = Deadline(timeout_s)
    since: tuple[Any, ...] | None = None
    since_t = 0.0
    while True:
        if errors:
            raise RuntimeError(f"E07: a member failed while the group formed: {errors}")
        h = holds()
        view = watcher.views[-1] if watcher.views else None
        broker_ok = watcher.unavailable is not None or (
            view is not None and view[1] == "Stable" and len(view[2]) == len(h))
        ok = all(h) and sum(map(len, h)) == partitions and broker_ok
        key = (tuple(map(tuple, h)), view) if ok else None
        if key is None or key != since:
            since, since_t = key, time.monotonic()
        elif time.monotonic() - since_t >= spell_s:
            return
        if deadline.expired():
            raise GroupNeverSettled(f"E07 {name}: the group did not settle within "
                                    f"{timeout_s} s (holds {h}, broker view {view})")
        time.sleep(0.05)
