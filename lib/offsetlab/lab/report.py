"""One self-contained HTML page for a run folder: ``data/runs/<run-id>/report.html``.

For every notebook of the run, taken from the executed notebook (nothing is retyped):

- its **question**: the first markdown cell (papermill's error banners skipped), its first
  heading as the section title;
- its **findings**: ``<notebook>/findings.json`` as a table, with the rule (threshold) and
  measured value of each from ``findings_detail.json``; without findings.json, the text output
  of the cells tagged ``findings``;
- its **answer** to the seed's question (``<notebook>/answer.json``, chosen from the findings
  by :mod:`offsetlab.lab.answers` in the notebook): the table at the top of the page;
- its **main plot**: the ``image/png`` output of the cell tagged ``main-plot``, else the first
  PNG of the notebook, inlined as base64;
- its **parameters** (``metadata.papermill.parameters``), status, duration and error (from
  ``run.json``, else papermill's metadata), and the measurements it saved
  (``<notebook>/measurements.json``: times that vary between runs, kept out of findings);
- links to its executed notebook and its data files (``.csv``/``.json``/``.png`` of
  ``<notebook>/``), relative to the run folder;

and for the run: profile, broker kind and version, offsetlab, kafka-python and Python
versions, an Environment table (run.json's ``environment``) and, when notebook 09 wrote one,
the three-client conformance matrix (:func:`report_parts.conformance_matrix`). CSS and plots are inlined, so
the page reads on its own (mailed, attached to CI); the file links work beside the run
folder. Notebooks that never ran (skipped, interrupted before their output was written) still
get a section with their question, read from the source notebook.
"""

from __future__ import annotations

import html
import json
import logging
import re
import string
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .answers import QUESTIONS, experiment_label
from .report_parts import (
    answers_table,
    conformance_matrix,
    environment_table,
    file_links,
    findings_table,
    measured_text,
    read_json,
)

log = logging.getLogger(__name__)

__all__ = ["write_report", "render_report", "notebook_summary", "ERROR_BANNER_TAG"]

#: tag papermill puts on the markdown banners it inserts into a failed notebook
ERROR_BANNER_TAG = "papermill-error-cell-tag"


def _tags(cell: Mapping[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _question(nb: Any) -> tuple[str | None, str]:
    """(title, markdown body) of the first markdown cell that is not a papermill banner."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown" and ERROR_BANNER_TAG not in _tags(cell):
            source = _text(cell.get("source"))
            lines = source.strip().splitlines()
            if lines and lines[0].startswith("#"):
                return lines[0].lstrip("#").strip(), "\n".join(lines[1:]).strip()
            return None, source.strip()
    return None, ""


def _output_text(outputs: Iterable[Mapping[str, Any]]) -> str:
    parts = []
    for out in outputs:
        kind = out.get("output_type")
        if kind == "stream":
            parts.append(_text(out.get("text")))
        elif kind in ("execute_result", "display_data"):
            text = _text(out.get("data", {}).get("text/plain"))
            if text and "image/png" not in out.get("data", {}):
                parts.append(text + "\n")
        elif kind == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}\n")
    return "".join(parts).rstrip("\n")


def _findings(nb: Any) -> str | None:
    """Text output of the cells tagged ``findings`` (None: no such cell or none ran)."""
    texts = [_output_text(cell.get("outputs", [])) for cell in nb.get("cells", [])
             if cell.get("cell_type") == "code" and "findings" in _tags(cell)]
    return "\n".join(t for t in texts if t) or None


def _png(cell: Mapping[str, Any]) -> str | None:
    for out in cell.get("outputs", []):
        data = out.get("data", {}) if out.get("output_type") in ("display_data", "execute_result") else {}
        if "image/png" in data:
            return _text(data["image/png"]).replace("\n", "")
    return None


def _main_plot(nb: Any) -> str | None:
    """Base64 PNG: the ``main-plot`` cell's, else the notebook's first."""
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    for cell in cells:
        if "main-plot" in _tags(cell) and (png := _png(cell)):
            return png
    for cell in cells:
        if png := _png(cell):
            return png
    return None


def _read_notebook(path: Path) -> Any | None:
    import nbformat

    try:
        return nbformat.read(str(path), as_version=4)
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None


def notebook_summary(run_dir: Path, entry: Mapping[str, Any]) -> dict[str, Any]:
    """What the report shows of one notebook (also useful on its own, e.g. in tests)."""
    name = str(entry["name"])
    executed = run_dir / str(entry.get("output") or f"{name}.ipynb")
    nb = _read_notebook(executed) if executed.is_file() else None
    source = Path(entry["source"]) if entry.get("source") else None
    question_nb = nb if nb is not None else (
        _read_notebook(source) if source is not None and source.is_file() else None)
    title, question = _question(question_nb) if question_nb is not None else (None, "")
    pm = dict(nb.metadata.get("papermill", {})) if nb is not None else {}
    status = entry.get("status") or ("failed" if pm.get("exception") else
                                     "passed" if nb is not None else "unknown")
    findings = read_json(run_dir / name / "findings.json")
    seed = QUESTIONS.get(name)
    answer = read_json(run_dir / name / "answer.json")
    return {
        "name": name,
        "title": title or name,
        "question": question,
        "executed": nb is not None,
        "output": executed.name if nb is not None else None,
        "findings": _findings(nb) if nb is not None else None,
        "findings_json": findings if isinstance(findings, dict) else None,
        "findings_detail": read_json(run_dir / name / "findings_detail.json"),
        "answer": answer if isinstance(answer, dict) else None,
        "seed_question": seed.question if seed else None,
        "experiment": experiment_label(name),
        "files": file_links(run_dir, name, executed.name if nb is not None else None),
        "plot": _main_plot(nb) if nb is not None else None,
        "parameters": pm.get("parameters", entry.get("parameters") or {}),
        "status": status,
        "duration_s": entry.get("duration_s", pm.get("duration")),
        "error": entry.get("error"),
        "measurements": read_json(run_dir / name / "measurements.json") or {},
    }


def _markdown(text: str) -> str:
    try:
        import mistune
    except ImportError:
        return "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p.strip())
    # escape=True: raw HTML in a notebook's markdown is shown as text, never run
    return str(mistune.create_markdown(escape=True, plugins=["table", "strikethrough"])(text))


def _inline(text: str) -> str:
    """A heading's text as HTML: escaped, with `code` spans kept as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _status(status: str) -> str:
    cls = status if status in ("passed", "failed", "interrupted", "running", "skipped",
                               "pending") else "unknown"
    return f'<span class="status {cls}">{html.escape(status)}</span>'


def _table(rows: Mapping[str, Any], cls: str) -> str:
    if not rows:
        return '<p class="none">none</p>'
    def cell(v: Any) -> str:  # a repeated measurement: median (min-max, n)
        if isinstance(v, Mapping) and "values" in v:
            return html.escape(measured_text(v["values"]) or "none")
        return f"<code>{html.escape(json.dumps(v, default=str))}</code>"

    body = "".join(f"<tr><th><code>{html.escape(str(k))}</code></th><td>{cell(v)}</td></tr>"
                   for k, v in rows.items())
    return f'<table class="{cls}">{body}</table>'


def _duration(value: Any) -> str:
    return f"{float(value):.1f} s" if isinstance(value, int | float) else "n/a"


def _section(s: Mapping[str, Any]) -> str:
    parts = [f'<section class="experiment" id="{html.escape(s["name"])}">',
             f'<h2>{_inline(s["title"])} {_status(s["status"])}</h2>',
             f'<p class="meta"><code>{html.escape(s["name"])}</code> &middot; '
             f'{_duration(s["duration_s"])}'
             + (f' &middot; executed notebook <a href="{quote(s["output"])}"><code>'
                f'{html.escape(s["output"])}</code></a>' if s["output"] else " &middot; not executed")
             + "</p>"]
    if s["error"]:
        err = s["error"]
        cell = f" (cell {err['cell']})" if err.get("cell") is not None else ""
        cls = "note" if err.get("type") == "Skipped" else "error"
        parts.append(f'<pre class="{cls}">{html.escape(str(err.get("type")))}{cell}: '
                     f'{html.escape(str(err.get("message")))}</pre>')
    parts.append("<h3>Question</h3>")
    if s["question"]:
        parts.append(f'<div class="question">{_markdown(s["question"])}</div>')
    elif s["title"] == s["name"]:
        parts.append('<p class="none">no markdown cell</p>')
    else:
        parts.append('<p class="none">(the title above is all the first markdown cell says)</p>')
    parts.append("<h3>Findings</h3>")
    if s["findings_json"] is not None:
        parts.append(findings_table(s["findings_json"], s["findings_detail"]))
    elif s["findings"]:
        parts.append('<p class="meta">no findings.json: the findings cells\' output</p>'
                     f'<pre class="findings">{html.escape(s["findings"])}</pre>')
    else:
        parts.append('<p class="none">no findings output (no cell tagged <code>findings</code>, '
                     'or it did not run)</p>')
    parts.append("<h3>Main plot</h3>")
    parts.append(f'<img class="plot" alt="main plot of {html.escape(s["name"])}" '
                 f'src="data:image/png;base64,{s["plot"]}">' if s["plot"]
                 else '<p class="none">no plot</p>')
    parts.append("<h3>Parameters</h3>")
    parts.append(_table(s["parameters"], "params"))
    if s["measurements"]:
        parts.append("<h3>Measured (varies between runs)</h3>")
        parts.append(_table(s["measurements"], "measure"))
    parts.append("<h3>Files</h3>")
    parts.append(s["files"])
    parts.append("</section>")
    return "\n".join(parts)


def _load_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    # no run.json (a folder of executed notebooks made by hand): list what is there
    return {"run_id": run_dir.name, "status": "unknown",
            "notebooks": [{"name": p.stem, "output": p.name, "status": None}
                          for p in sorted(run_dir.glob("*.ipynb"))]}


def render_report(run_dir: str | Path) -> str:
    """The report page for ``run_dir`` as a string."""
    run_dir = Path(run_dir)
    run = _load_run(run_dir)
    summaries = [notebook_summary(run_dir, entry) for entry in run.get("notebooks", [])]
    broker = run.get("broker") or {}
    versions = run.get("versions") or {}
    counts: dict[str, int] = {}
    for s in summaries:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    facts = {
        "status": run.get("status", "unknown"),
        "notebooks": ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none",
        "profile": run.get("profile", "n/a"),
        "started": run.get("started_at") or "n/a",
        "duration": _duration(run.get("duration_s")),
        "broker": " ".join(str(broker.get(k)) for k in ("kind", "version") if broker.get(k))
                  or f"not started (requested {broker.get('requested', 'n/a')})",
        "offsetlab": versions.get("offsetlab", "n/a"),
        "kafka-python": versions.get("kafka-python", "n/a"),
        "python": versions.get("python", "n/a"),
    }
    if run.get("overrides"):
        facts["overrides"] = json.dumps(run["overrides"], default=str)
    header = "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
                              for k, v in facts.items()) + "</dl>"
    if run.get("error"):
        err = run["error"]
        header += (f'<pre class="error">{html.escape(str(err.get("stage", "run")))}: '
                   f'{html.escape(str(err.get("type")))}: {html.escape(str(err.get("message")))}</pre>')
    toc = "<table><tr><th>experiment</th><th>status</th><th>duration</th></tr>" + "".join(
        f'<tr><td><a href="#{html.escape(s["name"])}">{_inline(s["title"])}</a></td>'
        f'<td>{_status(s["status"])}</td><td>{_duration(s["duration_s"])}</td></tr>'
        for s in summaries) + "</table>"
    answers = answers_table([
        {"name": s["name"], "experiment": s["experiment"], "answer": s["answer"],
         "question": (s["answer"] or {}).get("question") or s["seed_question"]}
        for s in summaries if s["seed_question"] or s["answer"]])
    template = string.Template(resources.files(__package__).joinpath("report.html").read_text())
    css = resources.files(__package__).joinpath("report.css").read_text()
    return template.substitute(title=html.escape(f"offsetlab run {run.get('run_id', run_dir.name)}"),
                               css=css, header=header, toc=toc, answers=answers,
                               conformance=conformance_matrix(run_dir),
                               environment=environment_table(run),
                               sections="\n".join(_section(s) for s in summaries))


def write_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` and return its path."""
    run_dir = Path(run_dir)
    path = run_dir / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render_report(run_dir), encoding="utf-8")
    tmp.replace(path)
    return path


if __name__ == "__main__":  # python -m offsetlab.lab.report data/runs/<run-id>: write it again
    import sys

    for folder in sys.argv[1:] or ["."]:
        print(write_report(folder))
