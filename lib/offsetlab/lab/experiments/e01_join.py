"""E01 Where join time goes: the initial rebalance delay, two members together, a late one.

On a broker the notebook started with ``group.initial.rebalance.delay.ms`` of its choice,
:func:`join_point` runs one repeat of two scenarios in a new group:

- ``together``: runners ``a`` and ``b`` ``start()`` at the same moment on an empty group. The
  broker holds the first join of an empty group for the delay and, when another member
  joined meanwhile, for another delay (KIP-134), so on Kafka the two wait about two delays;
- ``late``: ``late_s`` after they settled, runner ``c`` joins the now stable group. No initial
  delay applies to a group that is not empty: the rebalance lasts until ``a`` and ``b`` rejoin,
  which they do when a heartbeat tells them of it (at most one heartbeat interval).

:func:`join_repeats` runs ``repeats`` such repeats at once, each in its own group and topic
(the broker's delay is per group, so they do not hold each other up; running them together
keeps the notebook's time budget, and a loaded machine can only lengthen a join). Times are
seconds, from each runner's ``GroupJoin`` (subscribe to first assignment; KafkaJS's own
GROUP_JOIN ``duration`` is measured in :mod:`offsetlab.lab.experiments.e01_clients`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.runner import ConsumerRunner
from offsetlab.lab.experiments.e01_run_blocking import (
    Settings,
    create_topic_for,
    make_runner,
    settled,
    wait_until_e01,
)
from offsetlab.lab.raw import unique

__all__ = ["JOIN_SCENARIOS", "join_point", "join_repeats"]

#: the scenarios of one repeat, in the order they run
JOIN_SCENARIOS = ("together", "late")


def join_point(broker: BrokerHandle, s: Settings, *, late_s: float = 0.5, repeat: int = 0,
               make_name: Callable[[str], str] | None = None) -> list[dict[str, Any]]:
    """One repeat of ``together`` then ``late`` in a new group on ``broker``.

    One dict per scenario: ``scenario``, ``repeat``, ``join_s`` (``together``: the longer of
    the two runners' joins; ``late``: runner ``c``'s), ``settle_s`` (from the start until every
    live member holds partitions), ``members`` and ``generations`` (the generations the
    arriving runners' first joins got from the broker). Runners stop (and leave) on every exit
    path."""
    name = make_name or unique
    rows: list[dict[str, Any]] = []
    runners: dict[str, ConsumerRunner] = {}

    def make(n: str, topic: str, group: str) -> ConsumerRunner:
        runners[n] = make_runner(broker, topic, group, f"sweep-{n}", s, lambda r: None, [])
        return runners[n]

    def settle(members: tuple[str, ...], what: str) -> None:
        wait_until_e01(lambda: settled({n: runners[n].assignment() for n in members}, s.partitions),
              s.wait_s, what)

    try:
        topic, group = create_topic_for(broker, name("e01-sweep"), s), name("e01-sweep-group")
        t0 = time.monotonic()
        handles = {n: make(n, topic, group).start() for n in ("a", "b")}
        joins = {n: h.wait(s.wait_s) for n, h in handles.items()}
        settle(("a", "b"), "together: a and b settled")
        rows.append({"scenario": "together", "repeat": repeat,
                     "join_s": max(j.duration_s for j in joins.values()),
                     "settle_s": time.monotonic() - t0, "members": 2,
                     "generations": sorted({j.generation for j in joins.values()})})
        time.sleep(late_s)
        t0 = time.monotonic()
        join = make("c", topic, group).run(timeout=s.wait_s)
        settle(("a", "b", "c"), "late: a, b and c settled")
        rows.append({"scenario": "late", "repeat": repeat, "join_s": join.duration_s,
                     "settle_s": time.monotonic() - t0, "members": 3,
                     "generations": [join.generation]})
    finally:
        for r in runners.values():
            r.stop(timeout=30)
    for row in rows:
        for key in ("join_s", "settle_s"):
            row[key] = round(row[key], 3)
    return rows


def join_repeats(broker: BrokerHandle, s: Settings, repeats: int, *, late_s: float = 0.5,
                 max_parallel: int = 5) -> list[dict[str, Any]]:
    """``repeats`` runs of :func:`join_point`, up to ``max_parallel`` at once (a thread each,
    a group and topic each); their rows in repeat order. An error in any repeat is raised."""
    with ThreadPoolExecutor(max_workers=max(1, min(repeats, max_parallel)),
                            thread_name_prefix="e01-join") as pool:
        futures = [pool.submit(join_point, broker, s, late_s=late_s, repeat=i)
                   for i in range(repeats)]
        return [row for f in futures for row in f.result()]
