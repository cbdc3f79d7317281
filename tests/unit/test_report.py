"""The run report, built from fake run folders (hand-made executed notebooks and run.json)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from matplotlib.figure import Figure
from offsetlab.lab.report import ERROR_BANNER_TAG, notebook_summary, render_report, write_report


def png(color: str) -> str:
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1], [1, 0], color=color)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


FIRST_PNG, MAIN_PNG = png("red"), png("blue")


def code(source: str, tags: list[str], outputs: list[dict[str, Any]]) -> Any:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = tags
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return cell


def executed_notebook(path: Path, *, findings: str, parameters: dict[str, Any],
                      failed: bool = False) -> None:
    nb = nbformat.v4.new_notebook()
    if failed:
        banner = nbformat.v4.new_markdown_cell('<span style="color:red">An Exception was encountered</span>')
        banner.metadata["tags"] = [ERROR_BANNER_TAG]
        nb.cells.append(banner)
    nb.cells.append(nbformat.v4.new_markdown_cell(
        "# E01 Does `run()` block?\n\n**Question.** When does *run()* return? <script>x()</script>"))
    nb.cells.append(code("gap_s = 3", ["parameters"], []))
    nb.cells.append(code("plot_other()", [], [
        {"output_type": "display_data", "data": {"image/png": FIRST_PNG, "text/plain": "<Figure>"},
         "metadata": {}}]))
    nb.cells.append(code("plot_main()", ["main-plot"], [
        {"output_type": "display_data", "data": {"image/png": MAIN_PNG, "text/plain": "<Figure>"},
         "metadata": {}}]))
    outputs: list[dict[str, Any]] = [{"output_type": "stream", "name": "stdout", "text": findings}]
    if failed:
        outputs.append({"output_type": "error", "ename": "AssertionError", "evalue": "lost 1",
                        "traceback": []})
    nb.cells.append(code("lab.finding(...)", ["findings"], outputs))
    nb.metadata["papermill"] = {"parameters": parameters, "duration": 4.25,
                                "exception": failed}
    nbformat.write(nb, str(path))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "20261127-074500-seed"
    run.mkdir()
    executed_notebook(run / "01_run_blocking.ipynb",
                      findings="run() returns after the join: True\nconsumed once: 5 <of 5>\n",
                      parameters={"gap_s": 3.0, "run_id": "20261127-074500-seed"})
    executed_notebook(run / "03_batch_failure.ipynb", findings="redelivered: [3, 4, 5]\n",
                      parameters={}, failed=True)
    (run / "01_run_blocking").mkdir()
    (run / "01_run_blocking" / "measurements.json").write_text(json.dumps({"join_s": 0.42}))
    source = tmp_path / "05_retry_topic.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# E05 The main topic as its own retry queue"))
    nbformat.write(nb, str(source))
    (run / "run.json").write_text(json.dumps({
        "run_id": run.name, "profile": "seed", "status": "interrupted", "duration_s": 70.0,
        "started_at": "2026-11-27T07:45:00+00:00",
        "broker": {"requested": "auto", "kind": "kafka", "version": "4.1.1"},
        "versions": {"offsetlab": "0.1.0", "kafka-python": "3.0.12", "python": "3.11.7"},
        "overrides": {"gap_s": 3.0},
        "notebooks": [
            {"name": "01_run_blocking", "output": "01_run_blocking.ipynb", "status": "passed",
             "duration_s": 31.5, "parameters": {"gap_s": 3.0}, "error": None},
            {"name": "03_batch_failure", "output": "03_batch_failure.ipynb", "status": "failed",
             "duration_s": 12.0, "parameters": {},
             "error": {"type": "AssertionError", "message": "lost 1", "cell": 7}},
            {"name": "05_retry_topic", "source": str(source), "output": "05_retry_topic.ipynb",
             "status": "skipped", "duration_s": None, "parameters": {},
             "error": {"type": "Skipped", "message": "the run was interrupted", "cell": None}},
        ]}))
    return run


def test_summary_takes_everything_from_the_executed_notebook(run_dir: Path) -> None:
    s = notebook_summary(run_dir, {"name": "01_run_blocking", "status": "passed", "duration_s": 31.5})
    assert s["title"] == "E01 Does `run()` block?"
    assert s["question"].startswith("**Question.** When does *run()* return?")
    assert s["findings"] == "run() returns after the join: True\nconsumed once: 5 <of 5>"
    assert s["plot"] == MAIN_PNG, "the main-plot cell's image, not the first one"
    assert s["parameters"] == {"gap_s": 3.0, "run_id": "20261127-074500-seed"}
    assert s["measurements"] == {"join_s": 0.42}
    assert (s["status"], s["duration_s"]) == ("passed", 31.5)


def test_failed_notebook_skips_papermill_banners_and_shows_the_error(run_dir: Path) -> None:
    s = notebook_summary(run_dir, {"name": "03_batch_failure"})
    assert s["title"].startswith("E01"), "the banner papermill inserted is not the question"
    assert s["findings"] == "redelivered: [3, 4, 5]\nAssertionError: lost 1"
    assert (s["status"], s["duration_s"]) == ("failed", 4.25)  # papermill metadata without run.json


def test_report_page_is_self_contained_and_complete(run_dir: Path) -> None:
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text()
    assert page.count("data:image/png;base64,") == 2
    assert MAIN_PNG in page and FIRST_PNG not in page
    # nothing outside the page is referenced
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "<link" not in page and "<script" not in page
    # facts of the run
    for text in ["20261127-074500-seed", "kafka 4.1.1", "3.0.12", "0.1.0", "seed", "interrupted"]:
        assert text in page, text
    # per experiment: question (markdown rendered, raw HTML escaped), findings escaped
    assert "<em>run()</em>" in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "consumed once: 5 &lt;of 5&gt;" in page
    assert "AssertionError (cell 7): lost 1" in page
    assert '<span class="status failed">failed</span>' in page
    # the skipped notebook: its question comes from the source notebook
    assert "E05 The main topic as its own retry queue" in page
    assert "not executed" in page and "the run was interrupted" in page
    assert "<h2>E01 Does <code>run()</code> block?" in page
    assert "join_s" in page and "0.42" in page


def test_a_folder_without_run_json_lists_its_notebooks(run_dir: Path) -> None:
    (run_dir / "run.json").unlink()
    page = render_report(run_dir)
    assert "01_run_blocking" in page and "03_batch_failure" in page
    assert '<span class="status passed">passed</span>' in page
    assert '<span class="status failed">failed</span>' in page
