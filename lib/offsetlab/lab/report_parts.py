"""The report's tables (split from :mod:`offsetlab.lab.report`): answers to the seed's
questions, findings with their rules and measured values, an experiment's files, the
environment, and the hook for the three-client conformance matrix.

Every function takes what was read from the run folder and returns escaped HTML.
"""

from __future__ import annotations

import html
import json
import logging
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

#: what an experiment's folder holds that the report links (relative to the run folder)
DATA_SUFFIXES = (".csv", ".json", ".png")
#: where notebook 09 writes the three-client conformance matrix, relative to the run folder
CONFORMANCE_FILE = "09_client_conformance/conformance.json"


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``; None when it is missing or unreadable (logged)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("unreadable %s: %s", path, exc)
        return None


def py(value: Any) -> str:
    """A value as the notebook printed it (``True``, ``['a']``, ``None``), not as JSON."""
    return value if isinstance(value, str) else str(value)


def _code(value: Any) -> str:
    return f"<code>{html.escape(py(value))}</code>"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _num(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def measured_text(measured: Any) -> str:
    """A measured value for the findings table: a number; a list (or ``{"values": [...]}``,
    optionally with ``"unit"``) of numbers as ``median M (min-max, n=N)``; a dict of named
    values as ``name V, name V``. None: empty."""
    if measured is None:
        return ""
    if isinstance(measured, Mapping) and "values" in measured:
        unit = f" {measured['unit']}" if measured.get("unit") else ""
        return measured_text(measured["values"]) + unit
    if isinstance(measured, Sequence) and not isinstance(measured, str):
        values = list(measured)
        if values and all(_number(v) for v in values):
            if len(values) == 1:
                return _num(values[0])
            return (f"median {_num(statistics.median(values))} "
                    f"({_num(min(values))}\u2013{_num(max(values))}, n={len(values)})")
        return py(values)
    if isinstance(measured, Mapping):
        return ", ".join(f"{k} {measured_text(v)}" for k, v in measured.items())
    return _num(measured) if _number(measured) else py(measured)


def findings_table(findings: Mapping[str, Any], details: Mapping[str, Any] | None) -> str:
    """findings.json (+ findings_detail.json) as a table: finding, value, rule, measured."""
    details = details or {}
    rows = []
    for name, value in findings.items():
        d = details.get(name) or {}
        rule = d.get("rule") if isinstance(d, Mapping) else None
        by = d.get("by") if isinstance(d, Mapping) else None
        measured = measured_text(d.get("measured")) if isinstance(d, Mapping) else ""
        by_html = (f'<br><span class="by">by <code>{html.escape(by.rsplit(".", 2)[-2])}.'
                   f'{html.escape(by.rsplit(".", 1)[-1])}</code></span>') if by else ""
        rows.append(f"<tr><th>{html.escape(name)}</th><td>{_code(value)}</td>"
                    f"<td>{html.escape(rule) if rule else ''}{by_html}</td>"
                    f"<td>{html.escape(measured)}</td></tr>")
    if not rows:
        return '<p class="none">no findings recorded</p>'
    return ('<table class="findings"><tr><th>finding</th><th>value</th>'
            '<th>rule (threshold it came from), finder</th><th>measured</th></tr>'
            + "".join(rows) + "</table>")


def answers_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One row per experiment: ``experiment`` (E01), ``name`` (the section's anchor),
    ``question``, and ``answer`` (answer.json's content, or None: no answer recorded)."""
    if not rows:
        return '<p class="none">no experiment of this run asks one of the seed\'s questions</p>'
    body = []
    for r in rows:
        a = r.get("answer")
        if isinstance(a, Mapping):
            answer = f'<td class="answer">{html.escape(str(a.get("answer", "")))}</td>'
            rests = a.get("rests_on") or {}
            rests_on = ("<ul>" + "".join(f"<li>{html.escape(k)} = {_code(v)}</li>"
                                         for k, v in rests.items()) + "</ul>") if rests else ""
        else:
            answer, rests_on = '<td class="answer none">no answer recorded</td>', ""
        body.append(f'<tr><td><a href="#{html.escape(r["name"])}">{html.escape(r["experiment"])}'
                    f'</a></td><td>{html.escape(str(r.get("question") or ""))}</td>{answer}'
                    f'<td class="rests">{rests_on}</td></tr>')
    return ('<table class="answers"><tr><th>experiment</th><th>the seed\'s question</th>'
            '<th>answer</th><th>rests on (finding = value)</th></tr>' + "".join(body) + "</table>")


def file_links(run_dir: Path, name: str, executed: str | None) -> str:
    """Links to the executed notebook and to every .csv/.json/.png of the experiment's
    folder, relative to the run folder (the page lives there)."""
    links = []
    if executed:
        links.append(f'<a href="{quote(executed)}">{html.escape(executed)}</a>')
    folder = run_dir / name
    if folder.is_dir():
        links += [f'<a href="{quote(f"{name}/{p.name}")}">{html.escape(p.name)}</a>'
                  for p in sorted(folder.iterdir())
                  if p.is_file() and p.suffix.lower() in DATA_SUFFIXES]
    if not links:
        return '<p class="none">no files</p>'
    return '<p class="files">' + " &middot; ".join(links) + "</p>"


def _env_value(value: Any) -> str:
    if value is None:  # run.json's environment: a tool that is not there
        return '<span class="none">absent</span>'
    if isinstance(value, Mapping | list):
        return f"<code>{html.escape(json.dumps(value, default=str))}</code>"
    return _code(value)


def _rows(data: Mapping[str, Any]) -> str:
    return "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_env_value(v)}</td></tr>"
                   for k, v in data.items())


def environment_table(run: Mapping[str, Any]) -> str:
    """run.json's ``environment`` (whatever keys it has); without it, its versions and broker."""
    env = run.get("environment")
    if isinstance(env, Mapping) and env:
        return f'<table class="env">{_rows(env)}</table>'
    fallback = {**(run.get("versions") or {}),
                **{f"broker {k}": v for k, v in (run.get("broker") or {}).items()
                   if v is not None}}
    if not fallback:
        return '<p class="none">no environment recorded</p>'
    return ('<p class="none">run.json has no <code>environment</code>; its versions and '
            f'broker:</p><table class="env">{_rows(fallback)}</table>')


def _column(cell: Mapping[str, Any]) -> str:
    """A matrix column: the client, with its group protocol and broker where not the default
    (``classic`` on ``kafka``)."""
    name = str(cell.get("client", "?"))
    if cell.get("group_protocol") not in (None, "classic"):
        name += f" ({cell['group_protocol']})"
    if cell.get("broker") not in (None, "kafka"):
        name += f" on {cell['broker']}"
    return name


def conformance_matrix(run_dir: Path) -> str:
    """The three-client conformance matrix of ``09_client_conformance/conformance.json``,
    or "" when the run has none. The file is a list of cells ``{"behaviour", "client",
    "group_protocol": "classic" | "consumer", "broker", "value", "evidence"}``; the table has
    a row per behaviour and a column per client (and protocol, and broker other than
    ``kafka``), in the order the cells first name them; a value is shown as written."""
    doc = read_json(run_dir / CONFORMANCE_FILE)
    cells = [c for c in doc if isinstance(c, Mapping) and "behaviour" in c] \
        if isinstance(doc, list) else []
    if not cells:
        if doc is not None:
            log.warning("%s holds no conformance cells", run_dir / CONFORMANCE_FILE)
        return ""
    columns: list[str] = []
    table: dict[str, dict[str, Any]] = {}
    for cell in cells:
        column = _column(cell)
        if column not in columns:
            columns.append(column)
        table.setdefault(str(cell["behaviour"]), {})[column] = cell.get("value")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><th>{html.escape(b)}</th>"
        + "".join(f"<td>{_code(row[c]) if c in row else ''}</td>" for c in columns) + "</tr>"
        for b, row in table.items())
    link = f'<a href="{quote(CONFORMANCE_FILE)}">{html.escape(CONFORMANCE_FILE)}</a>'
    return (f'<section class="conformance" id="conformance"><h2>Three-client conformance</h2>'
            f'<p class="meta">from {link}</p><table class="conformance"><tr><th>behaviour</th>'
            f"{head}</tr>{body}</table></section>")
