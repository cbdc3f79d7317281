"""The whole conformance matrix on one broker: notebook 09's builder.

:func:`run_matrix` runs the two families at the same time, each in its own thread, on one
broker started with :data:`BROKER_SETTINGS`: the join/commit/failure rows
(:mod:`~offsetlab.lab.clients.conformance_join_family`) and the liveness rows
(:mod:`~offsetlab.lab.clients.conformance_liveness`). Every (row, column) gives one
:class:`~offsetlab.lab.clients.matrix.Cell`; a run that raised gives a cell whose value is
``failed: ClassName`` (and an entry in :attr:`MatrixResult.errors`), nothing is retried
beyond what the families do themselves. :func:`write_matrix` checks the cells
(:func:`~offsetlab.lab.clients.matrix.check_matrix`, for the columns that ran) and writes
``conformance.json``. :func:`matrix_findings` hands every cell to its family's finder.

The broker: short sessions for both protocols (:data:`kip848.BROKER_SETTINGS` and the
liveness family's), and Kafka's default ``group.initial.rebalance.delay.ms`` (3000), which
``first_join_s`` is about.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offsetlab.brokers import BrokerHandle
from offsetlab.lab.clients import conformance_findings_join as ff
from offsetlab.lab.clients import conformance_findings_liveness as fl
from offsetlab.lab.clients import conformance_join as cj
from offsetlab.lab.clients import conformance_join_family as jf
from offsetlab.lab.clients import conformance_liveness as lv
from offsetlab.lab.clients import kip848
from offsetlab.lab.clients.matrix import (
    BEHAVIOURS,
    COLUMNS,
    UNSUPPORTED,
    Cell,
    check_matrix,
    write_conformance,
)
from offsetlab.lab.findings import Finding
from offsetlab.lab.timeline_core import Timeline

__all__ = ["BROKER_SETTINGS", "matrix_broker", "MatrixParams", "MatrixResult", "run_matrix", "write_matrix",
           "matrix_findings", "matrix_table", "evidence_table", "column_name"]

#: the one broker of notebook 09
BROKER_SETTINGS: dict[str, Any] = {**kip848.BROKER_SETTINGS, **lv.BROKER_SETTINGS,
                                   "group.initial.rebalance.delay.ms": 3000}


@contextmanager
def matrix_broker(lab: Any) -> Iterator[BrokerHandle | None]:
    """The broker for the matrix: the notebook's own when it started one with
    :data:`BROKER_SETTINGS` (``NotebookSession(..., broker_settings=BROKER_SETTINGS)``, run
    alone), else a dedicated one (``lab.dedicated``: None where the kind cannot)."""
    own = getattr(lab.broker, "settings", None) or {}
    if (not lab.shared_given and lab.broker_kind == "kafka"
            and all(own.get(k) == v for k, v in BROKER_SETTINGS.items())):
        yield lab.broker
        return
    with lab.dedicated(BROKER_SETTINGS) as broker:
        yield broker


def column_name(client: str, group_protocol: str) -> str:
    """``kafka-python``, ``kafkajs``, ``confluent-kafka``, ``confluent-kafka (KIP-848)``."""
    return client if group_protocol == "classic" else f"{client} (KIP-848)"


@dataclass(frozen=True, kw_only=True)
class MatrixParams:
    family: jf.FamilyParams = field(default_factory=jf.FamilyParams)
    liveness: lv.LivenessParams = field(default_factory=lv.LivenessParams)
    #: a down broker counts as reported promptly within this many seconds (finder)
    broker_down_within_s: float = 20.0


@dataclass
class MatrixResult:
    cells: list[Cell]
    #: (behaviour, client, group_protocol) -> the numbers the join family's finders compare
    measures: dict[tuple[str, str, str], dict[str, Any]]
    #: (behaviour, client, group_protocol) -> why that cell's run failed
    errors: dict[tuple[str, str, str], str]
    #: seconds: ``join`` and ``liveness`` (each family's wall time), ``total``
    wall_s: dict[str, float]
    columns: list[tuple[str, str]]

    def cell(self, behaviour: str, client: str, group_protocol: str = "classic") -> Cell:
        return next(c for c in self.cells if (c.behaviour, c.client, c.group_protocol)
                    == (behaviour, client, group_protocol))


def _failed(behaviour: str, client: str, proto: str, broker: BrokerHandle, error: str) -> Cell:
    return Cell(behaviour=behaviour, client=client, group_protocol=proto, broker=broker.kind,
                value=f"failed: {error.split(':', 1)[0]}", evidence=error[:300])


def _liveness(broker: BrokerHandle, params: lv.LivenessParams, columns: Sequence[tuple[str, str]],
              timeline: Timeline, log_dir: Path | None, out: dict[str, Any]) -> None:
    t0 = time.monotonic()
    try:
        out["cells"] = lv.run_family(broker, params, columns, timeline=timeline, log_dir=log_dir)
    except lv.FamilyFailed as exc:
        out["cells"] = exc.cells
        for b, c, g, why in exc.failures:
            out["errors"][(b, c, g)] = why
            out["cells"].append(_failed(b, c, g, broker, why))
    except Exception as exc:  # noqa: BLE001 - every cell of the family says so
        why = f"{type(exc).__name__}: {exc}"
        for b in lv.BEHAVIOURS:
            for c, g in columns:
                out["errors"][(b, c, g)] = why
                out["cells"].append(_failed(b, c, g, broker, why))
    out["wall_s"] = round(time.monotonic() - t0, 2)


def run_matrix(broker: BrokerHandle, params: MatrixParams | None = None,
               columns: Sequence[tuple[str, str]] = COLUMNS, *, timeline: Timeline,
               log_dir: Path | str | None = None) -> MatrixResult:
    """Both families at once on ``broker`` (one started with :data:`BROKER_SETTINGS`)."""
    p = params or MatrixParams()
    log_path = Path(log_dir) if log_dir is not None else None
    live: dict[str, Any] = {"cells": [], "errors": {}, "wall_s": None}
    t0 = time.monotonic()
    cj.warm_coordinator(broker)  # every __consumer_offsets partition loaded before any join
    thread = threading.Thread(target=_liveness, name="conformance-liveness",
                              args=(broker, p.liveness, list(columns), timeline, log_path, live))
    thread.start()
    try:
        fam = jf.run_family(broker, p.family, columns, timeline=timeline, log_dir=log_path,
                            max_workers=len(jf._TASKS) * len(columns))
    finally:
        thread.join()
    order = {(b, c): i for i, (b, c) in enumerate(
        (b, col) for b in BEHAVIOURS for col in COLUMNS)}
    cells = sorted([*fam.cells, *live["cells"]],
                   key=lambda c: order[(c.behaviour, (c.client, c.group_protocol))])
    return MatrixResult(cells, fam.measures, {**fam.errors, **live["errors"]},
                        {"join": fam.wall_s, "liveness": live["wall_s"],
                         "total": round(time.monotonic() - t0, 2)}, list(columns))


def write_matrix(path: Path | str, result: MatrixResult) -> list[str]:
    """Write ``conformance.json``; returns what :func:`check_matrix` finds wrong with the
    columns that ran (empty when every behaviour x column has exactly one cell)."""
    write_conformance(path, result.cells)
    return check_matrix(result.cells, columns=result.columns)


def matrix_findings(result: MatrixResult, params: MatrixParams | None = None) -> list[Finding]:
    """Every cell that did not fail, through its family's finder (names carry the column)."""
    p = params or MatrixParams()
    out: list[Finding] = []

    def ok(b: str, c: str, g: str) -> bool:
        return (b, c, g) not in result.errors

    for client, proto in result.columns:
        col = column_name(client, proto)

        def m(b: str, client: str = client, proto: str = proto) -> dict[str, Any]:
            return result.measures.get((b, client, proto)) or {}

        def value(b: str, client: str = client, proto: str = proto) -> Any:
            return result.cell(b, client, proto).value

        if ok("first_join_s", client, proto):
            out.append(ff.first_hold_after_delay(col, m("first_join_s").get("first_hold_s"),
                                                 m("first_join_s").get("delay_s", 3.0)))
        if ok("run_returns_after_join", client, proto):
            out.append(ff.run_returns_after_join(col, value("run_returns_after_join")))
        if ok("join_after_killed_member_s", client, proto):
            k = m("join_after_killed_member_s")
            out.append(ff.waits_out_session(col, k.get("value"), k["session_s"], k.get("gap_s")))
        if ok("static_member_rejoin_s", client, proto):
            s = m("static_member_rejoin_s")
            v = value("static_member_rejoin_s")
            out.append(ff.static_beats_session(col, v, s.get("session_s", 0.0), s.get("gap_s"))
                       if v != UNSUPPORTED else ff.static_beats_session(col, v, 0.0, None))
        for b, fn in (("commit_message_offset_rereads", ff.message_offset_rereads),
                      ("idiomatic_commit_rereads", ff.idiomatic_rereads_none)):
            if ok(b, client, proto):
                out.append(fn(col, value(b), m(b).get("committed"), m(b).get("messages", 5)))
        if ok("batch_failure_redelivered", client, proto):
            out.append(ff.batch_redelivered(col, value("batch_failure_redelivered")))
        if ok("broker_down_at_start", client, proto):
            out.append(ff.broker_down_reported(col, value("broker_down_at_start")))
            out.append(ff.broker_down_within(col, m("broker_down_at_start").get("seconds"),
                                             p.broker_down_within_s))
        for b, fn in (("sleep_evicted_by_session_first", fl.sleep_removed_by),
                      ("sleep_evicted_by_max_poll_first", fl.sleep_removed_by),
                      ("pause_keeps_membership", fl.pause_kept),
                      ("pause_on_error_keeps_membership", fl.pause_on_error_kept),
                      ("pause_survives_rebalance", fl.pause_survived)):
            if ok(b, client, proto):
                out.append(fn(result.cell(b, client, proto)))
    session_rows = [c for c in result.cells if c.behaviour == "sleep_evicted_by_session_first"
                    and (c.behaviour, c.client, c.group_protocol) not in result.errors]
    out.append(fl.removed_by_session(session_rows))
    return out


def matrix_table(cells: Sequence[Cell]) -> Any:
    """A DataFrame: rows behaviours, columns the client columns, values the cells' values."""
    import pandas as pd

    cols = [column_name(c, g) for c, g in COLUMNS
            if any((x.client, x.group_protocol) == (c, g) for x in cells)]
    frame = pd.DataFrame(index=list(BEHAVIOURS), columns=cols, dtype=object)
    for c in cells:
        v = c.value
        frame.loc[c.behaviour, column_name(c.client, c.group_protocol)] = (
            "[" + ", ".join(map(str, v)) + "]" if isinstance(v, list) else v)
    return frame


def evidence_table(cells: Sequence[Cell]) -> Any:
    import pandas as pd

    return pd.DataFrame([{"behaviour": c.behaviour, "column": column_name(c.client, c.group_protocol),
                          "value": c.value, "evidence": c.evidence} for c in cells])
