"""Run the join/commit/failure family of the conformance matrix for several columns at once.

:func:`run_family` runs every (row, column) pair of the family concurrently, one thread each
(each driver makes its own topic and group, and starts and stops its members in its own
thread: ``PR_SET_PDEATHSIG`` fires when the starting thread exits). A pair whose run raised
gives a cell whose value names the failure (``failed: ClassName``) and an entry in
:attr:`FamilyResult.errors`; nothing is retried or hidden.

Brokers: ``broker`` serves everything; ``consumer_broker`` (when given) serves the KIP-848
column's kill-and-restart rows, which need the broker's own session timeout
(``group.consumer.session.timeout.ms``) lowered. ``first_join_s`` means Kafka's default
``group.initial.rebalance.delay.ms`` (3000) on ``broker``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.clients import conformance_commit as cc
from offsetlab.lab.clients import conformance_join as cj
from offsetlab.lab.clients.matrix import COLUMNS, Cell
from offsetlab.lab.timeline_core import Timeline

log = logging.getLogger(__name__)

__all__ = ["FamilyParams", "FamilyResult", "FAMILY_BEHAVIOURS", "run_family"]

FAMILY_BEHAVIOURS = ("first_join_s", "run_returns_after_join", "join_after_killed_member_s",
                     "static_member_rejoin_s", "commit_message_offset_rereads",
                     "idiomatic_commit_rereads", "batch_failure_redelivered",
                     "broker_down_at_start")


@dataclass(frozen=True, kw_only=True)
class FamilyParams:
    join: cj.JoinParams = field(default_factory=cj.JoinParams)
    commit: cc.CommitParams = field(default_factory=cc.CommitParams)


@dataclass
class FamilyResult:
    cells: list[Cell]
    #: (behaviour, client, group_protocol) -> the numbers the finders compare
    measures: dict[tuple[str, str, str], dict[str, Any]]
    wall_s: float
    errors: dict[tuple[str, str, str], str]

    def cell(self, behaviour: str, client: str, group_protocol: str = "classic") -> Cell:
        return next(c for c in self.cells if (c.behaviour, c.client, c.group_protocol)
                    == (behaviour, client, group_protocol))


#: (task name, the behaviours it yields, long?) in start order: the long ones first
_TASKS = (("killed", ("join_after_killed_member_s",)), ("static", ("static_member_rejoin_s",)),
          ("down", ("broker_down_at_start",)),
          ("first_join", ("first_join_s", "run_returns_after_join")),
          ("message_offset", ("commit_message_offset_rereads",)),
          ("idiomatic", ("idiomatic_commit_rereads",)), ("batch", ("batch_failure_redelivered",)))


def _runner(task: str, broker: BrokerHandle, consumer_broker: BrokerHandle, client: str,
            proto: str, params: FamilyParams, timeline: Timeline | None,
            log_dir: Path | None, measures: dict[str, Any]) -> Callable[[], list[Cell]]:
    kw: dict[str, Any] = {"timeline": timeline, "log_dir": log_dir}
    j, c = params.join, params.commit
    kill_broker = consumer_broker if proto == "consumer" else broker
    table: dict[str, Callable[[], list[Cell]]] = {
        "killed": lambda: [cj.run_join_after_killed_member(kill_broker, client, proto, j,
                                                           measures=measures, **kw)],
        "static": lambda: [cj.run_static_member_rejoin(kill_broker, client, proto, j,
                                                       measures=measures, **kw)],
        "down": lambda: [cc.run_broker_down_at_start(broker, client, proto, c, measures=measures,
                                                     **kw)],
        "first_join": lambda: cj.run_first_join_and_returns(broker, client, proto, j,
                                                            measures=measures, **kw),
        "message_offset": lambda: [cc.run_commit_message_offset_rereads(
            broker, client, proto, c, measures=measures, **kw)],
        "idiomatic": lambda: [cc.run_idiomatic_commit_rereads(broker, client, proto, c,
                                                              measures=measures, **kw)],
        "batch": lambda: [cc.run_batch_failure_redelivered(broker, client, proto, c,
                                                           measures=measures, **kw)],
    }
    return table[task]


def run_family(broker: BrokerHandle, params: FamilyParams | None = None,
               columns: Sequence[tuple[str, str]] = COLUMNS, *, timeline: Timeline | None = None,
               log_dir: Path | str | None = None, max_workers: int = 12,
               consumer_broker: BrokerHandle | None = None,
               only: Sequence[str] | None = None) -> FamilyResult:
    """Every (row, column) of the family (``only``: these rows), concurrently."""
    params = params or FamilyParams()
    log_path = Path(log_dir) if log_dir is not None else None
    jobs = []
    for task, behaviours in _TASKS:
        if only is not None and not set(behaviours) & set(only):
            continue
        for client, proto in columns:
            measures: dict[str, Any] = {}
            run = _runner(task, broker, consumer_broker or broker, client, proto, params,
                          timeline, log_path, measures)
            jobs.append((task, behaviours, client, proto, measures, run))
    t0 = time.monotonic()
    cells: list[Cell] = []
    errors: dict[tuple[str, str, str], str] = {}
    all_measures: dict[tuple[str, str, str], dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="conformance") as pool:
        futures = [(job, pool.submit(job[-1])) for job in jobs]
        for (task, behaviours, client, proto, measures, _), fut in futures:
            try:
                got = fut.result()
            except Exception as exc:  # noqa: BLE001 - a failed run is a cell that says so
                log.warning("conformance %s on %s/%s failed: %r", task, client, proto, exc)
                text = f"{type(exc).__name__}: {exc}"
                got = [cj.make_cell(b, client, proto, broker, f"failed: {type(exc).__name__}",
                                    text[:300]) for b in behaviours]
                for b in behaviours:
                    errors[(b, client, proto)] = text
            cells.extend(got)
            for b in behaviours:
                all_measures[(b, client, proto)] = measures
    return FamilyResult(cells, all_measures, round(time.monotonic() - t0, 2), errors)
