"""The run report, built from fake run folders (hand-made executed notebooks and run.json)."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import nbformat
import pytest
from matplotlib.figure import Figure
from offsetlab.lab.answers import QUESTIONS
from offsetlab.lab.report import ERROR_BANNER_TAG, notebook_summary, render_report, write_report
from offsetlab.lab.report_parts import conformance_matrix, measured_text


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


FINDINGS = {"runner: the awaited run() returned after its group join": True,
            "delay 3000 ms: two members together waited >= 2 x the delay": True,
            "after a killed member: the new member joined no sooner than its session timeout less one heartbeat after the kill": True,
            "runner: partition split (sorted sizes)": [1, 2],
            "raw: <b>escaped</b>": "x < y"}
DETAIL = {"delay 3000 ms: two members together waited >= 2 x the delay":
          {"rule": "together: join_s >= 2 x 3 s", "measured": 6.0312,
           "by": "offsetlab.lab.experiments.e01_findings.delay_sweep"},
          "after a killed member: the new member joined no sooner than its session timeout less one heartbeat after the kill":
          {"rule": "join_s >= 3 s / 2", "measured": {"values": [2.9, 3.1, 3.05], "unit": "s"}},
          "runner: partition split (sorted sizes)": {"rule": None, "measured": [0.25, 0.5]}}
ANSWER = {"question": QUESTIONS["01_run_blocking"].question,
          "answer": "run() returns once the group join completed, start() at once",
          "rests_on": {"runner: the awaited run() returned after its group join": True,
                       "runner: partition split (sorted sizes)": [1, 2]}}


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
    (run / "01_run_blocking" / "measurements.json").write_text(json.dumps(
        {"join_s": 0.42, "first_join_s": {"values": [3.2, 3.0, 3.1], "median": 3.1, "min": 3.0,
                                          "max": 3.2}}))
    (run / "01_run_blocking" / "findings.json").write_text(json.dumps(FINDINGS))
    (run / "01_run_blocking" / "findings_detail.json").write_text(json.dumps(DETAIL))
    (run / "01_run_blocking" / "answer.json").write_text(json.dumps(ANSWER))
    for data in ("timeline.csv", "timeline.png", "join sweep.csv"):
        (run / "01_run_blocking" / data).write_text("x")
    (run / "01_run_blocking" / "notebook.log").write_text("client log")
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
    assert s["measurements"]["join_s"] == 0.42 and s["measurements"]["first_join_s"]["median"] == 3.1
    assert (s["status"], s["duration_s"]) == ("passed", 31.5)
    assert s["findings_json"] == FINDINGS and s["findings_detail"] == DETAIL
    assert s["answer"] == ANSWER and s["experiment"] == "E01"
    assert s["seed_question"] == QUESTIONS["01_run_blocking"].question


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
    # plots and CSS are inlined; the only other references are files of the run folder
    for ref in re.findall(r'(?:src|href)="([^"]*)"', page):
        if not ref.startswith(("data:", "#")):
            assert "://" not in ref and not ref.startswith("/") and ".." not in ref, ref
            assert (run_dir / unquote(ref)).is_file(), ref
    assert "<link" not in page and "<script" not in page
    # facts of the run
    for text in ["20261127-074500-seed", "kafka 4.1.1", "3.0.12", "0.1.0", "seed", "interrupted"]:
        assert text in page, text
    # per experiment: question (markdown rendered, raw HTML escaped), findings escaped
    assert "<em>run()</em>" in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "redelivered: [3, 4, 5]" in page  # 03 has no findings.json: its cell's text
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


def _between(page: str, start: str, end: str) -> str:
    return page[page.index(start):page.index(end, page.index(start))]


def test_answers_come_first_one_row_per_experiment_with_what_they_rest_on(run_dir: Path) -> None:
    later = run_dir / "10_three_clients"
    later.mkdir()
    (later / "answer.json").write_text(json.dumps(
        {"question": "Do three clients agree?", "answer": "they differ on 2 of 5 behaviours",
         "rests_on": {"behaviours that differ": 2}}))
    doc = json.loads((run_dir / "run.json").read_text())
    doc["notebooks"].append({"name": "10_three_clients", "status": "passed"})
    (run_dir / "run.json").write_text(json.dumps(doc))
    page = render_report(run_dir)
    assert page.index("Answers to the seed's questions") < page.index("<nav>") \
        < page.index('class="experiment"')
    table = _between(page, '<table class="answers">', "</table>")
    rows = table.split("<tr>")[2:]
    assert len(rows) == 3, "E01, E03 (no answer) and E10; E05's stem asks no seed question"
    e01, e03, e10 = rows
    assert '<a href="#01_run_blocking">E01</a>' in e01
    assert "run() returns once the group join completed, start() at once" in e01
    assert "Does run() block?" in e01
    assert ("runner: the awaited run() returned after its group join = <code>True</code>" in e01
            and "runner: partition split (sorted sizes) = <code>[1, 2]</code>" in e01)
    assert '<a href="#03_batch_failure">E03</a>' in e03 and "no answer recorded" in e03
    assert QUESTIONS["03_batch_failure"].question.split(":")[0] in e03
    assert '<a href="#10_three_clients">E10</a>' in e10 and "Do three clients agree?" in e10
    assert "they differ on 2 of 5 behaviours" in e10 and "behaviours that differ = <code>2</code>" in e10


def test_findings_are_a_table_with_rule_and_measured_spread(run_dir: Path) -> None:
    page = render_report(run_dir)
    e01 = _between(page, 'id="01_run_blocking"', "</section>")
    table = _between(e01, '<table class="findings">', "</table>")
    assert '<pre class="findings">' not in e01, "findings.json is there: no text fallback"
    row = _between(table, "delay 3000 ms", "</tr>")
    assert "<code>True</code>" in row and "together: join_s &gt;= 2 x 3 s" in row and "6.031" in row
    assert "by <code>e01_findings.delay_sweep</code>" in row, "the finder that computed it"
    measures = _between(e01, '<table class="measure">', "</table>")
    assert "median 3.1 (3\u20133.2, n=3)" in measures and "<code>0.42</code>" in measures
    row = _between(table, "after a killed member", "</tr>")
    assert "median 3.05 (2.9\u20133.1, n=3) s" in row
    assert "median 0.375 (0.25\u20130.5, n=2)" in _between(table, "partition split", "</tr>")
    assert "raw: &lt;b&gt;escaped&lt;/b&gt;</th><td><code>x &lt; y</code>" in table
    in_order = [r.split("</th>")[0].removeprefix("<th>") for r in table.split("<tr>")[2:]]
    assert in_order == [n.replace("<", "&lt;").replace(">", "&gt;") for n in FINDINGS]
    e03 = _between(page, 'id="03_batch_failure"', "</section>")
    assert '<pre class="findings">redelivered: [3, 4, 5]' in e03, "no findings.json: the text"


def test_each_experiment_links_its_notebook_and_data_files(run_dir: Path) -> None:
    page = render_report(run_dir)
    e01 = _between(page, 'id="01_run_blocking"', "</section>")
    for href in ("01_run_blocking.ipynb", "01_run_blocking/timeline.csv",
                 "01_run_blocking/timeline.png", "01_run_blocking/join%20sweep.csv",
                 "01_run_blocking/findings.json", "01_run_blocking/answer.json"):
        assert f'href="{href}"' in e01, href
    assert "notebook.log" not in page
    e05 = _between(page, 'id="05_retry_topic"', "</section>")
    assert "no files" in e05 and "href" not in e05


def test_environment_shows_run_json_environment_else_versions_and_broker(run_dir: Path) -> None:
    page = render_report(run_dir)
    env = _between(page, '<section class="environment"', "</section>")
    assert "has no <code>environment</code>" in env
    assert "kafka-python" in env and "3.0.12" in env and "broker version" in env
    doc = json.loads((run_dir / "run.json").read_text())
    doc["environment"] = {"git_commit": "abc1234", "git_dirty": False, "java": "17.0.9",
                          "cores": 2, "memory_gb": 7.7, "jobs": {"make": 1}, "node": None}
    (run_dir / "run.json").write_text(json.dumps(doc))
    env = _between(render_report(run_dir), '<section class="environment"', "</section>")
    assert "has no" not in env
    for key, value in [("git_commit", "abc1234"), ("git_dirty", "False"), ("java", "17.0.9"),
                       ("cores", "2"), ("memory_gb", "7.7"), ("jobs", "{&quot;make&quot;: 1}")]:
        assert f"<th>{key}</th><td><code>{value}</code></td>" in env, key
    assert '<th>node</th><td><span class="none">absent</span></td>' in env


def test_conformance_matrix_only_when_notebook_09_wrote_one(run_dir: Path) -> None:
    assert conformance_matrix(run_dir) == ""
    page = render_report(run_dir)
    assert "HOOK: three-client conformance matrix" in page and 'id="conformance"' not in page
    folder = run_dir / "09_client_conformance"
    folder.mkdir()
    (folder / "conformance.json").write_text("not json")
    assert conformance_matrix(run_dir) == ""
    (folder / "conformance.json").write_text(json.dumps([
        {"behaviour": "run_returns_after_join", "client": "kafka-python",
         "group_protocol": "classic", "broker": "kafka", "value": "n/a", "evidence": "e1"},
        {"behaviour": "run_returns_after_join", "client": "kafkajs",
         "group_protocol": "classic", "broker": "kafka", "value": True, "evidence": "e2"},
        {"behaviour": "first_join_s", "client": "confluent-kafka",
         "group_protocol": "consumer", "broker": "kafka", "value": 0.4, "evidence": "e3"},
        {"behaviour": "first_join_s", "client": "kafkajs",
         "group_protocol": "classic", "broker": "kafka", "value": 6.1, "evidence": "e4"}]))
    matrix = conformance_matrix(run_dir)
    rows = matrix.split("<tr>")[1:]
    assert rows[0] == ("<th>behaviour</th><th>kafka-python</th><th>kafkajs</th>"
                       "<th>confluent-kafka (consumer)</th></tr>")
    assert rows[1].startswith("<th>run_returns_after_join</th><td><code>n/a</code></td>"
                              "<td><code>True</code></td><td></td>")
    assert rows[2].startswith("<th>first_join_s</th><td></td><td><code>6.1</code></td>"
                              "<td><code>0.4</code></td>")
    page = render_report(run_dir)
    assert page.index('id="conformance"') < page.index("<nav>")
    assert page.index('<table class="answers">') < page.index('id="conformance"')


def test_measured_values_read_as_numbers_spreads_and_named_values() -> None:
    assert measured_text(None) == ""
    assert measured_text(0.123456) == "0.1235" and measured_text(7) == "7"
    assert measured_text([3.0]) == "3"
    assert measured_text([1, 5, 2]) == "median 2 (1\u20135, n=3)"
    assert measured_text({"values": [0.5, 1.5], "unit": "s"}) == "median 1 (0.5\u20131.5, n=2) s"
    assert measured_text({"ratio": 2.5, "bus-main-topic": 0.4}) == "ratio 2.5, bus-main-topic 0.4"
    assert measured_text(["a", "b"]) == "['a', 'b']" and measured_text(True) == "True"
