"""The suite runner with a fake broker: selection, parameters, run.json as it goes, failures,
interruption. One test executes two tiny notebooks with papermill for real."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat
import pytest
from offsetlab.bus.errors import ConfigError
from offsetlab.lab.profiles import ProfileError
from offsetlab.lab.suite import (
    SuiteConfig,
    add_arguments,
    make_run_id,
    parse_overrides,
    run_suite,
    select_notebooks,
)


def write_notebook(path: Path, params: str, *cells: tuple[str, str, list[str]]) -> Path:
    """A notebook: a markdown question, a ``parameters`` cell, then (type, source, tags)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_markdown_cell(f"# {path.stem}\n\n**Question.** Does it?"))
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells.append(p)
    for kind, source, tags in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.write(nb, str(path))
    return path


RUNNER_PARAMS = 'bootstrap_servers = None\nbroker_kind = "kafka"\nrun_id = None\n'


class FakeBroker:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.version = "9.9.9-fake"
        self.bootstrap_servers = "127.0.0.1:1"
        self.cold_start_s = 0.0
        self.running = True
        self.stopped = False


class FakeBrokers:
    """A broker factory that records what was asked and whether the broker was stopped."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[str, str | None]] = []
        self.brokers: list[FakeBroker] = []

    @contextmanager
    def __call__(self, kind: str, *, bootstrap_servers: str | None = None) -> Iterator[FakeBroker]:
        self.calls.append((kind, bootstrap_servers))
        if self.fail is not None:
            raise self.fail
        broker = FakeBroker("kafka" if kind == "auto" else kind)
        self.brokers.append(broker)
        try:
            yield broker
        finally:
            broker.stopped = True
            broker.running = False


class FakeExecutor:
    """Records each execution; raises what ``outcomes[stem]`` says; writes an output file."""

    def __init__(self, outcomes: Mapping[str, BaseException] | None = None,
                 on_call: Any = None) -> None:
        self.outcomes = dict(outcomes or {})
        self.calls: list[tuple[str, dict[str, Any], Path]] = []
        self.on_call = on_call
        self.seen_status: list[str] = []

    def __call__(self, source: Path, output: Path, parameters: Mapping[str, Any], *,
                 cwd: Path, cell_timeout_s: float | None) -> None:
        self.calls.append((source.stem, dict(parameters), cwd))
        run = json.loads((output.parent / "run.json").read_text())
        self.seen_status.append(next(nb["status"] for nb in run["notebooks"] if nb["name"] == source.stem))
        if self.on_call:
            self.on_call(source.stem)
        nbformat.write(nbformat.read(str(source), as_version=4), str(output))
        if source.stem in self.outcomes:
            raise self.outcomes[source.stem]


@pytest.fixture
def lab(tmp_path: Path) -> dict[str, Path]:
    nbs, profiles, runs = tmp_path / "notebooks", tmp_path / "profiles", tmp_path / "runs"
    for d in (nbs, profiles):
        d.mkdir()
    write_notebook(nbs / "01_first.ipynb", RUNNER_PARAMS + "gap_s = 0.1\nmembers = 2\n")
    write_notebook(nbs / "02_second.ipynb", RUNNER_PARAMS + "gap_s = 0.1\n")
    write_notebook(nbs / "10_tenth.ipynb", RUNNER_PARAMS + "retries = 1\n")
    (profiles / "fast.yaml").write_text("{}\n")
    (profiles / "seed.yaml").write_text("01_first:\n  gap_s: 3.0\n10_tenth:\n  retries: 5\n")
    return {"notebooks": nbs, "profiles": profiles, "runs": runs}


def config(lab: dict[str, Path], **kw: Any) -> SuiteConfig:
    return SuiteConfig(notebooks_dir=lab["notebooks"], profiles_dir=lab["profiles"],
                       runs_dir=lab["runs"], progress=False, **kw)


def run_json(result: Any) -> dict[str, Any]:
    return json.loads((result.run_dir / "run.json").read_text())


# -- pieces ----------------------------------------------------------------------------------
def test_only_matches_number_prefixes_and_stems(lab) -> None:
    from offsetlab.lab.profiles import discover_notebooks

    nbs = discover_notebooks(lab["notebooks"])
    assert list(select_notebooks(nbs, [])) == ["01_first", "02_second", "10_tenth"]
    assert list(select_notebooks(nbs, ["1", "10"])) == ["01_first", "10_tenth"]
    assert list(select_notebooks(nbs, ["02_second"])) == ["02_second"]
    with pytest.raises(ConfigError, match="only=07 matches no notebook"):
        select_notebooks(nbs, ["07"])


def test_overrides_are_typed_like_yaml() -> None:
    assert parse_overrides(["gap_s=1.5", "01.members=3", "label=seed", "on=true", "x=null"]) == (
        ("gap_s", 1.5), ("01.members", 3), ("label", "seed"), ("on", True), ("x", None))
    with pytest.raises(ConfigError, match="name=value"):
        parse_overrides(["gap_s"])


def test_config_is_checked_up_front(monkeypatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(ConfigError, match="broker='docker'"):
        SuiteConfig(broker="docker")
    with pytest.raises(ConfigError, match="--bootstrap-servers"):
        SuiteConfig(broker="external")
    with pytest.raises(ConfigError, match="run_id"):
        SuiteConfig(run_id="../x")
    with pytest.raises(ConfigError, match="cell_timeout_s"):
        SuiteConfig(cell_timeout_s=0)
    with pytest.raises(TypeError):
        SuiteConfig("fast")  # type: ignore[misc]  keyword-only
    assert SuiteConfig(broker="external", bootstrap_servers="h:9092").bootstrap_servers == "h:9092"


def test_run_ids_are_time_and_profile_and_never_reused(tmp_path: Path) -> None:
    now = datetime(2026, 11, 27, 7, 45, 0, tzinfo=UTC)
    assert make_run_id("fast", tmp_path, now) == "20261127-074500-fast"
    (tmp_path / "20261127-074500-fast").mkdir()
    assert make_run_id("fast", tmp_path, now) == "20261127-074500-fast-2"


def test_cli_arguments_parse() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--profile", "seed", "--only", "01,05", "--only", "7", "--broker",
                              "tansu", "-p", "gap_s=2", "-p", "01.members=3"])
    assert (args.profile, args.only, args.broker, args.param) == (
        "seed", ["01,05", "7"], "tansu", ["gap_s=2", "01.members=3"])


# -- runs with a fake broker and executor ------------------------------------------------------
def test_a_failing_notebook_does_not_stop_the_others(lab) -> None:
    brokers = FakeBrokers()
    execute = FakeExecutor({"02_second": RuntimeError("cell exploded")})
    result = run_suite(config(lab, profile="seed", broker="kafka", run_id="r1",
                              overrides=(("gap_s", 0.5), ("10.retries", 7))),
                       broker_factory=brokers, execute=execute)
    assert brokers.calls == [("kafka", None)]
    assert brokers.brokers[0].stopped
    assert [c[0] for c in execute.calls] == ["01_first", "02_second", "10_tenth"]
    assert execute.seen_status == ["running", "running", "running"]  # written before each starts
    params = {stem: p for stem, p, _ in execute.calls}
    runner = {"bootstrap_servers": "127.0.0.1:1", "broker_kind": "kafka", "run_id": "r1"}
    assert params["01_first"] == {"gap_s": 0.5, **runner}          # override beats profile
    assert params["02_second"] == {"gap_s": 0.5, **runner}
    assert params["10_tenth"] == {"retries": 7, **runner}
    assert {cwd for _, _, cwd in execute.calls} == {lab["notebooks"]}

    assert (result.status, result.exit_code) == ("failed", 1)
    assert result.notebooks == {"01_first": "passed", "02_second": "failed", "10_tenth": "passed"}
    doc = run_json(result)
    assert doc["status"] == "failed" and doc["finished_at"]
    assert doc["broker"] == {"requested": "kafka", "kind": "kafka", "version": "9.9.9-fake",
                             "bootstrap_servers": "127.0.0.1:1", "cold_start_s": 0.0}
    assert set(doc["versions"]) >= {"offsetlab", "kafka-python", "python"}
    second = doc["notebooks"][1]
    assert second["error"] == {"type": "RuntimeError", "message": "cell exploded", "cell": None}
    assert all(isinstance(nb["duration_s"], float) for nb in doc["notebooks"])
    assert result.report == result.run_dir / "report.html" and result.report.is_file()


def test_ctrl_c_stops_the_broker_and_leaves_a_readable_partial_run(lab) -> None:
    brokers = FakeBrokers()
    execute = FakeExecutor({"02_second": KeyboardInterrupt()})
    result = run_suite(config(lab, run_id="r2"), broker_factory=brokers, execute=execute)
    assert brokers.brokers[0].stopped
    assert (result.status, result.exit_code) == ("interrupted", 130)
    doc = run_json(result)
    assert doc["status"] == "interrupted"
    assert [(nb["name"], nb["status"]) for nb in doc["notebooks"]] == [
        ("01_first", "passed"), ("02_second", "interrupted"), ("10_tenth", "skipped")]
    assert [c[0] for c in execute.calls] == ["01_first", "02_second"]
    assert "interrupted" in (result.run_dir / "report.html").read_text()


def test_a_broker_that_does_not_start_fails_the_run_without_executing(lab) -> None:
    from offsetlab.brokers import BrokerStartTimeout

    execute = FakeExecutor()
    result = run_suite(config(lab, run_id="r3"),
                       broker_factory=FakeBrokers(fail=BrokerStartTimeout("no answer in 90 s")),
                       execute=execute)
    assert execute.calls == []
    assert result.exit_code == 1
    doc = run_json(result)
    assert doc["error"]["stage"] == "broker" and doc["error"]["type"] == "BrokerStartTimeout"
    assert {nb["status"] for nb in doc["notebooks"]} == {"skipped"}
    assert "no answer in 90 s" in (result.run_dir / "report.html").read_text()


def test_a_broker_that_dies_mid_run_skips_the_rest(lab) -> None:
    brokers = FakeBrokers()

    def die_after_first(stem: str) -> None:
        if stem == "01_first":
            brokers.brokers[0].running = False

    result = run_suite(config(lab, run_id="r4"), broker_factory=brokers,
                       execute=FakeExecutor(on_call=die_after_first))
    assert result.notebooks == {"01_first": "passed", "02_second": "skipped", "10_tenth": "skipped"}
    assert run_json(result)["error"]["type"] == "BrokerExited"
    assert result.exit_code == 1


def test_bad_profiles_and_overrides_fail_before_the_broker_starts(lab) -> None:
    brokers = FakeBrokers()
    (lab["profiles"] / "typo.yaml").write_text("01_first:\n  gapp_s: 1\n")
    with pytest.raises(ProfileError, match="gapp_s"):
        run_suite(config(lab, profile="typo"), broker_factory=brokers, execute=FakeExecutor())
    with pytest.raises(ConfigError, match="'retries' is not a parameter of notebook '01'"):
        run_suite(config(lab, overrides=(("01.retries", 1),)), broker_factory=brokers,
                  execute=FakeExecutor())
    assert brokers.calls == []
    assert not lab["runs"].exists() or not any(lab["runs"].iterdir())


# -- papermill for real ---------------------------------------------------------------------
PNG_CELL = """
import base64, io
from matplotlib.figure import Figure
from IPython.display import Image, display
fig = Figure(figsize=(2, 1)); fig.add_subplot().plot([0, 1], [0, members])
buf = io.BytesIO(); fig.savefig(buf, format="png"); display(Image(buf.getvalue()))
"""


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_papermill_runs_real_notebooks_into_the_run_folder(tmp_path: Path) -> None:
    nbs, profiles = tmp_path / "notebooks", tmp_path / "profiles"
    nbs.mkdir()
    profiles.mkdir()
    write_notebook(nbs / "01_ok.ipynb", RUNNER_PARAMS + "members = 2\n",
                   ("code", PNG_CELL, ["main-plot"]),
                   ("code", 'print(f"members: {members}")\nprint(f"broker: {broker_kind} {bootstrap_servers}")',
                    ["findings"]))
    write_notebook(nbs / "02_fails.ipynb", RUNNER_PARAMS,
                   ("code", "raise ValueError('the handler broke')", []))
    (profiles / "fast.yaml").write_text("{}\n")
    brokers = FakeBrokers()
    result = run_suite(SuiteConfig(notebooks_dir=nbs, profiles_dir=profiles, runs_dir=tmp_path / "runs",
                                   run_id="real", overrides=(("members", 3),), progress=False,
                                   cell_timeout_s=120),
                       broker_factory=brokers)
    assert result.notebooks == {"01_ok": "passed", "02_fails": "failed"}
    doc = run_json(result)
    assert doc["notebooks"][1]["error"]["type"] == "ValueError"
    assert doc["notebooks"][1]["error"]["message"] == "the handler broke"
    executed = nbformat.read(str(result.run_dir / "01_ok.ipynb"), as_version=4)
    assert executed.metadata.papermill.parameters == {
        "members": 3, "bootstrap_servers": "127.0.0.1:1", "broker_kind": "kafka", "run_id": "real"}
    findings = next(c for c in executed.cells if "findings" in c.metadata.get("tags", []))
    assert "".join(o.get("text", "") for o in findings.outputs) == "members: 3\nbroker: kafka 127.0.0.1:1\n"
    page = (result.run_dir / "report.html").read_text()
    assert "members: 3" in page and "data:image/png;base64,iVBOR" in page
    assert "the handler broke" in page


def test_cli_usage_errors_exit_2_before_any_broker(capsys) -> None:
    from offsetlab.lab.suite import main

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert main(parser.parse_args(["--only", "99", "--broker", "kafka"])) == 2
    assert "only=99 matches no notebook" in capsys.readouterr().out
    assert main(parser.parse_args(["--profile", "no-such-profile"])) == 2
    assert "no profile 'no-such-profile'" in capsys.readouterr().out
    assert main(parser.parse_args(["-p", "novalue"])) == 2
