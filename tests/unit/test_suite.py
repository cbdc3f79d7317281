"""The suite runner with fake brokers and executors: selection, parameters, scheduling, the
default number of slots, the environment record, run.json as it goes, slots running at once,
failures, interruption. One test executes two tiny notebooks with papermill for real, two
at a time."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
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
from offsetlab.lab.suite_env import default_jobs, environment
from offsetlab.lab.suite_pool import EXPECTED_S, expected_durations, schedule


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
    def __init__(self, kind: str, bootstrap_servers: str) -> None:
        self.kind = kind
        self.version = "9.9.9-fake"
        self.bootstrap_servers = bootstrap_servers
        self.cold_start_s = 0.0
        self.running = True
        self.stopped = False


class FakeBrokers:
    """A broker factory that records what was asked and whether each broker was stopped;
    the n-th broker listens on 127.0.0.1:n (1-based). ``fail`` fails every start,
    ``fail_calls`` the starts with those 0-based call numbers."""

    def __init__(self, fail: BaseException | None = None, *, resolves_to: str = "kafka",
                 fail_calls: Sequence[int] = (), stop_s: Mapping[int, float] | None = None) -> None:
        self.fail = fail
        self.stop_s = dict(stop_s or {})  # how long stopping the n-th broker (0-based) takes
        self.fail_calls = set(fail_calls)
        self.resolves_to = resolves_to
        self.calls: list[tuple[str, str | None]] = []
        self.brokers: list[FakeBroker] = []
        self.lock = threading.Lock()

    @contextmanager
    def __call__(self, kind: str, *, bootstrap_servers: str | None = None) -> Iterator[FakeBroker]:
        with self.lock:
            n = len(self.calls)
            self.calls.append((kind, bootstrap_servers))
            if self.fail is not None or n in self.fail_calls:
                raise self.fail or RuntimeError(f"start {n} failed")
            kind = self.resolves_to if kind == "auto" else kind
            broker = FakeBroker(kind, bootstrap_servers if kind == "external"
                                else f"127.0.0.1:{len(self.brokers) + 1}")
            self.brokers.append(broker)
            stop_s = self.stop_s.get(len(self.brokers) - 1, 0.0)
        try:
            yield broker
        finally:
            time.sleep(stop_s)
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
    kw.setdefault("jobs", 1)
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
    with pytest.raises(ConfigError, match="jobs=0"):
        SuiteConfig(jobs=0)
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
                              "tansu", "-p", "gap_s=2", "-p", "01.members=3", "-j", "3"])
    assert (args.profile, args.only, args.broker, args.param, args.jobs) == (
        "seed", ["01,05", "7"], "tansu", ["gap_s=2", "01.members=3"], 3)
    assert parser.parse_args(["--jobs", "2"]).jobs == 2
    assert parser.parse_args([]).jobs is None  # the default rule


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
                             "bootstrap_servers": "127.0.0.1:1", "cold_start_s": 0.0,
                             "slots": [{"slot": 0, "kind": "kafka", "bootstrap_servers": "127.0.0.1:1",
                                        "cold_start_s": 0.0, "shared": False, "error": None}]}
    assert set(doc["versions"]) >= {"offsetlab", "kafka-python", "python"}
    assert doc["environment"]["jobs"] == doc["jobs"] == 1
    assert doc["environment"]["kafka"] == "9.9.9-fake"
    assert {nb["slot"] for nb in doc["notebooks"]} == {0}
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


# -- scheduling, the default number of slots, the environment ---------------------------------
def test_schedule_runs_the_longest_expected_first_and_unknown_ones_before_all() -> None:
    expected = {"00_a": 9.0, "01_b": 38.7, "02_c": 41.8, "03_d": 38.7, "04_e": None}
    assert schedule(["00_a", "01_b", "02_c", "03_d", "04_e"], expected) == [
        "04_e", "02_c", "01_b", "03_d", "00_a"]  # ties keep the notebooks' order
    assert schedule(["x", "y"], {}) == ["x", "y"]


def write_run(root: Path, run_id: str, profile: str, started_at: str,
              notebooks: dict[str, tuple[str, float | None]]) -> None:
    (root / run_id).mkdir(parents=True)
    (root / run_id / "run.json").write_text(json.dumps({
        "run_id": run_id, "profile": profile, "started_at": started_at,
        "notebooks": [{"name": n, "status": st, "duration_s": d} for n, (st, d) in notebooks.items()]}))


def test_expected_durations_come_from_the_newest_earlier_run_of_the_profile(tmp_path: Path) -> None:
    write_run(tmp_path, "old", "fast", "2026-01-01T00:00:00+00:00",
              {"01_run_blocking": ("passed", 50.0), "02_errors_and_events": ("passed", 12.0)})
    write_run(tmp_path, "new", "fast", "2026-01-02T00:00:00+00:00",
              {"01_run_blocking": ("passed", 20.0), "02_errors_and_events": ("failed", 3.0),
               "99_new": ("passed", 70.0)})
    write_run(tmp_path, "seedy", "seed", "2026-01-03T00:00:00+00:00",
              {"01_run_blocking": ("passed", 300.0)})
    stems = ["01_run_blocking", "02_errors_and_events", "07_pause_on_dependency", "99_new", "98_unseen"]
    got = expected_durations(stems, tmp_path, "fast")
    assert got == {"01_run_blocking": 20.0,        # the newest run wins
                   "02_errors_and_events": 12.0,   # a failed run's duration is not used
                   "07_pause_on_dependency": EXPECTED_S["07_pause_on_dependency"],  # the table
                   "99_new": 70.0, "98_unseen": None}
    assert expected_durations(["01_run_blocking", "02_errors_and_events"], tmp_path, "seed") == {
        "01_run_blocking": 300.0, "02_errors_and_events": None}  # the table is the fast profile's
    assert expected_durations(["00_broker_smoke"], tmp_path / "missing", "fast") == {
        "00_broker_smoke": EXPECTED_S["00_broker_smoke"]}


def test_the_table_names_every_notebook() -> None:
    from offsetlab.lab.profiles import discover_notebooks

    assert set(EXPECTED_S) <= set(discover_notebooks())


def test_default_jobs_is_one_per_core_at_least_two_within_memory() -> None:
    assert default_jobs(2, 23.4) == 2      # the machine it was measured on
    assert default_jobs(1, 16.0) == 2      # at least 2: the notebooks mostly wait
    assert default_jobs(8, 64.0) == 8
    assert default_jobs(8, 8.0) == 3       # (8 GB - 2 GB reserved) // 2 GB a slot
    assert default_jobs(4, 3.0) == 1       # memory wins over the minimum of 2
    assert default_jobs(4, None) == 4      # memory unknown: cores
    assert default_jobs() >= 1


class FakeCommands:
    """Answers git, java and node like they would; ``absent`` ones are not installed."""

    def __init__(self, *, absent: Sequence[str] = (), in_git: bool = True, dirty: bool = False) -> None:
        self.absent, self.in_git, self.dirty = set(absent), in_git, dirty
        self.calls: list[list[str]] = []

    def __call__(self, cmd: Sequence[str]) -> tuple[int, str, str] | None:
        cmd = list(cmd)
        self.calls.append(cmd)
        tool = Path(cmd[0]).name
        if tool in self.absent:
            return None
        if tool == "git" and not self.in_git:
            return 128, "", "fatal: not a git repository (or any of the parent directories): .git"
        if cmd[-2:] == ["rev-parse", "HEAD"]:
            return 0, "0123456789abcdef0123456789abcdef01234567\n", ""
        if cmd[-1] == "--porcelain":
            return 0, " M lib/offsetlab/lab/suite.py\n" if self.dirty else "", ""
        if tool == "java":
            return 0, "", ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment '
                           '(build 17.0.15+6-Debian-1deb12u1)\n')
        if tool == "node":
            return 0, "v20.20.2\n", ""
        raise AssertionError(cmd)


ENV_KEYS = ["git_commit", "git_dirty", "offsetlab", "kafka_python", "pandas", "papermill", "kafka",
            "java", "node", "python", "cores", "memory_gb", "jobs"]


def test_environment_is_flat_and_says_what_ran_where(monkeypatch, tmp_path: Path) -> None:
    import platform
    from importlib import metadata

    monkeypatch.delenv("JAVA_HOME", raising=False)
    env = environment(3, kafka="4.1.1", root=tmp_path, run=FakeCommands(dirty=True),
                      n_cores=2, mem_gb=23.4)
    assert list(env) == ENV_KEYS
    assert env == {
        "git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": True,
        "offsetlab": env["offsetlab"], "kafka_python": metadata.version("kafka-python"),
        "pandas": metadata.version("pandas"), "papermill": metadata.version("papermill"),
        "kafka": "4.1.1", "java": "17.0.15", "node": "20.20.2",
        "python": platform.python_version(), "cores": 2, "memory_gb": 23.4, "jobs": 3}
    assert env["offsetlab"]
    assert all(isinstance(v, str | int | float | bool | type(None)) for v in env.values())


def test_environment_without_git_java_or_node_says_null(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", "/opt/jdk-21")
    cmds = FakeCommands(absent=["java", "node"], in_git=False)
    env = environment(1, root=tmp_path, run=cmds)
    assert (env["git_commit"], env["git_dirty"], env["java"], env["node"], env["kafka"]) == (
        None, None, None, None, None)
    assert ["/opt/jdk-21/bin/java", "-version"] in cmds.calls  # JAVA_HOME's java, like the broker
    clean = environment(1, root=tmp_path, run=FakeCommands(dirty=False))
    assert clean["git_dirty"] is False
    assert isinstance(clean["cores"], int) and clean["cores"] >= 1


def test_environment_of_this_checkout_runs_the_real_commands() -> None:
    env = environment(2)
    assert list(env) == ENV_KEYS and env["jobs"] == 2
    assert env["git_commit"] is None or len(env["git_commit"]) == 40


# -- several slots at once ----------------------------------------------------------------------
class SlotExecutor(FakeExecutor):
    """A fake executor for several slots: notebooks in ``together`` wait until all of them
    run at once (proof that they do); ``block`` ones run until interrupt() or kill()."""

    def __init__(self, outcomes: Mapping[str, BaseException] | None = None, *,
                 together: Sequence[str] = (), block: Sequence[str] = ()) -> None:
        super().__init__(outcomes)
        self.barrier = threading.Barrier(len(together)) if together else None
        self.together, self.block = set(together), set(block)
        self.released = threading.Event()
        self.interrupts = self.kills = 0
        self.lock = threading.Lock()
        self.running_seen: list[int] = []

    def __call__(self, source: Path, output: Path, parameters: Mapping[str, Any], *,
                 cwd: Path, cell_timeout_s: float | None) -> None:
        run = json.loads((output.parent / "run.json").read_text())
        with self.lock:
            self.running_seen.append(sum(nb["status"] == "running" for nb in run["notebooks"]))
        if source.stem in self.together:
            assert self.barrier is not None
            self.barrier.wait(timeout=10)
        if source.stem in self.block:
            assert self.released.wait(timeout=10), "never interrupted"
            with self.lock:
                self.calls.append((source.stem, dict(parameters), cwd))
            raise RuntimeError("kernel died (SIGINT)")
        with self.lock:
            super().__call__(source, output, parameters, cwd=cwd, cell_timeout_s=cell_timeout_s)

    def interrupt(self) -> None:
        self.interrupts += 1
        self.released.set()

    def kill(self) -> None:
        self.kills += 1


def test_two_slots_run_at_once_each_on_its_own_broker_and_a_failure_stops_nothing(lab) -> None:
    brokers = FakeBrokers()
    execute = SlotExecutor({"02_second": RuntimeError("cell exploded")},
                           together=["01_first", "02_second"])
    result = run_suite(config(lab, broker="kafka", run_id="j2", jobs=2),
                       broker_factory=brokers, execute=execute)
    assert brokers.calls == [("kafka", None), ("kafka", None)]  # one broker per slot
    assert all(b.stopped for b in brokers.brokers)  # every broker entered was exited
    assert result.notebooks == {"01_first": "passed", "02_second": "failed", "10_tenth": "passed"}
    assert result.exit_code == 1
    doc = run_json(result)
    assert doc["jobs"] == doc["environment"]["jobs"] == 2
    assert max(execute.running_seen) == 2
    by_slot = {nb["name"]: nb["slot"] for nb in doc["notebooks"]}
    assert {by_slot["01_first"], by_slot["02_second"]} == {0, 1}
    slots = {s["slot"]: s["bootstrap_servers"] for s in doc["broker"]["slots"]}
    for nb in doc["notebooks"]:  # each notebook was given its own slot's broker
        assert nb["parameters"]["bootstrap_servers"] == slots[nb["slot"]]
    assert sorted(slots.values()) == ["127.0.0.1:1", "127.0.0.1:2"]
    assert doc["notebooks"][1]["error"]["message"] == "cell exploded"
    assert doc["status"] == "failed" and doc["error"] is None


def test_the_progress_bar_counts_running_passed_and_failed(lab, capsys) -> None:
    execute = SlotExecutor({"02_second": RuntimeError("cell exploded")},
                           together=["01_first", "02_second"])
    run_suite(SuiteConfig(notebooks_dir=lab["notebooks"], profiles_dir=lab["profiles"],
                          runs_dir=lab["runs"], run_id="bar", jobs=2, report=False),
              broker_factory=FakeBrokers(), execute=execute)
    out, err = capsys.readouterr()
    assert "running=2, passed=0, failed=0" in err  # both ran at once
    assert "running=0, passed=2, failed=1" in err  # the last state
    lines = [line for line in out.splitlines() if line.strip()]
    assert sorted(line.split()[1] for line in lines) == ["01_first", "02_second", "10_tenth"]
    assert any(line.split()[0] == "failed" and "RuntimeError: cell exploded" in line for line in lines)


def test_slots_run_the_longest_expected_first(lab) -> None:
    write_run(lab["runs"], "before", "fast", "2026-01-01T00:00:00+00:00",
              {"01_first": ("passed", 1.0), "02_second": ("passed", 30.0), "10_tenth": ("passed", 5.0)})
    execute = FakeExecutor()
    result = run_suite(config(lab, run_id="lpt"), broker_factory=FakeBrokers(), execute=execute)
    assert [c[0] for c in execute.calls] == ["02_second", "10_tenth", "01_first"]
    assert run_json(result)["order"] == ["02_second", "10_tenth", "01_first"]
    assert [nb["name"] for nb in run_json(result)["notebooks"]] == [  # run.json keeps file order
        "01_first", "02_second", "10_tenth"]


def test_auto_is_resolved_once_and_an_external_cluster_is_shared(lab) -> None:
    brokers = FakeBrokers()
    run_suite(config(lab, broker="auto", run_id="auto", jobs=3), broker_factory=brokers,
              execute=FakeExecutor())
    assert brokers.calls == [("auto", None), ("kafka", None), ("kafka", None)]
    assert all(b.stopped for b in brokers.brokers)

    brokers = FakeBrokers(resolves_to="external")
    result = run_suite(config(lab, broker="auto", bootstrap_servers="kafka.example:9092",
                              run_id="ext", jobs=3), broker_factory=brokers, execute=FakeExecutor())
    assert brokers.calls == [("auto", "kafka.example:9092")]  # started (connected) once
    doc = run_json(result)
    assert [s["shared"] for s in doc["broker"]["slots"]] == [False, True, True]
    assert {nb["parameters"]["bootstrap_servers"] for nb in doc["notebooks"]} == {"kafka.example:9092"}
    assert result.status == "passed"


def test_a_slot_whose_broker_does_not_start_leaves_its_notebooks_to_the_others(lab) -> None:
    brokers = FakeBrokers(fail_calls=[1])
    result = run_suite(config(lab, broker="kafka", run_id="half", jobs=2), broker_factory=brokers,
                       execute=FakeExecutor())
    assert result.notebooks == {"01_first": "passed", "02_second": "passed", "10_tenth": "passed"}
    doc = run_json(result)
    failed = [s for s in doc["broker"]["slots"] if s["error"]]
    assert len(failed) == 1 and failed[0]["error"]["message"] == "start 1 failed"
    assert {nb["slot"] for nb in doc["notebooks"]} == {failed[0]["slot"] ^ 1}
    assert all(b.stopped for b in brokers.brokers)


def test_an_interrupt_stops_every_slot_and_broker(lab) -> None:
    brokers = FakeBrokers()
    # 02 raises KeyboardInterrupt (as Ctrl-C would) while 01 runs on the other slot until
    # the runner interrupts its kernel
    execute = SlotExecutor({"02_second": KeyboardInterrupt()}, block=["01_first"])
    result = run_suite(config(lab, broker="kafka", run_id="int", jobs=2), broker_factory=brokers,
                       execute=execute)
    assert (result.status, result.exit_code) == ("interrupted", 130)
    assert execute.interrupts == 1
    assert len(brokers.brokers) == 2 and all(b.stopped for b in brokers.brokers)
    doc = run_json(result)
    assert doc["status"] == "interrupted" and doc["finished_at"]
    assert {nb["name"]: nb["status"] for nb in doc["notebooks"]} == {
        "01_first": "interrupted", "02_second": "interrupted", "10_tenth": "skipped"}
    assert all(isinstance(nb["duration_s"], float) for nb in doc["notebooks"][:2])
    assert "10_tenth" not in [c[0] for c in execute.calls]


def test_ctrl_c_in_the_main_thread_interrupts_the_running_notebooks(lab) -> None:
    import _thread
    import signal

    # _thread.interrupt_main() does nothing while SIGINT is not handled by Python (SIG_IGN or
    # SIG_DFL); once under `make test` no interrupt arrived at all, so the test sets the handler
    # it relies on instead of inheriting whatever the process has
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_interrupts_the_running_notebooks(lab, _thread)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_interrupts_the_running_notebooks(lab, _thread) -> None:

    # slot 0's broker (the first: with "auto" the other slots wait for its kind) takes a while
    # to stop, and run_suite must wait for it: a Ctrl-C that lands in Thread.join makes
    # CPython 3.11 report the thread being joined (slot 0's) as finished while it still runs
    brokers = FakeBrokers(stop_s={0: 0.5})
    execute = SlotExecutor(block=["01_first", "02_second"])

    def ctrl_c_once_both_run() -> None:
        deadline = time.monotonic() + 10
        while len(execute.running_seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        _thread.interrupt_main()  # what SIGINT (and the runner's SIGTERM handler) do

    threading.Thread(target=ctrl_c_once_both_run, daemon=True).start()
    result = run_suite(config(lab, broker="auto", run_id="sigint", jobs=2),
                       broker_factory=brokers, execute=execute)
    assert result.status == "interrupted"
    assert execute.interrupts == 1 and execute.kills == 0  # SIGINT was enough
    assert all(b.stopped for b in brokers.brokers)
    assert [nb["status"] for nb in run_json(result)["notebooks"]] == [
        "interrupted", "interrupted", "skipped"]


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
def test_papermill_runs_real_notebooks_into_the_run_folder(tmp_path: Path, capfd, caplog) -> None:
    nbs, profiles = tmp_path / "notebooks", tmp_path / "profiles"
    nbs.mkdir()
    profiles.mkdir()
    # a '=' in a trailing comment made papermill's parameter inspection log "Unable to parse"
    write_notebook(nbs / "01_ok.ipynb", RUNNER_PARAMS + "members = 2  # like Consumer(members=2)\n",
                   ("code", PNG_CELL, ["main-plot"]),
                   ("code", 'print(f"members: {members}")\nprint(f"broker: {broker_kind} {bootstrap_servers}")',
                    ["findings"]))
    write_notebook(nbs / "02_fails.ipynb", RUNNER_PARAMS,
                   ("code", "raise ValueError('the handler broke')", []))
    (profiles / "fast.yaml").write_text("{}\n")
    brokers = FakeBrokers()
    result = run_suite(SuiteConfig(notebooks_dir=nbs, profiles_dir=profiles, runs_dir=tmp_path / "runs",
                                   run_id="real", overrides=(("members", 3),), progress=False,
                                   cell_timeout_s=120, jobs=2),
                       broker_factory=brokers)
    assert result.notebooks == {"01_ok": "passed", "02_fails": "failed"}
    doc = run_json(result)
    assert doc["notebooks"][1]["error"]["type"] == "ValueError"
    assert doc["notebooks"][1]["error"]["message"] == "the handler broke"
    assert len(brokers.brokers) == 2 and all(b.stopped for b in brokers.brokers)
    servers = doc["notebooks"][0]["parameters"]["bootstrap_servers"]
    executed = nbformat.read(str(result.run_dir / "01_ok.ipynb"), as_version=4)
    assert executed.metadata.papermill.parameters == {
        "members": 3, "bootstrap_servers": servers, "broker_kind": "kafka", "run_id": "real"}
    assert executed.metadata.papermill.input_path == str(nbs / "01_ok.ipynb")
    findings = next(c for c in executed.cells if "findings" in c.metadata.get("tags", []))
    assert "".join(o.get("text", "") for o in findings.outputs) == f"members: 3\nbroker: kafka {servers}\n"
    page = (result.run_dir / "report.html").read_text()
    assert "members: 3" in page and "data:image/png;base64,iVBOR" in page
    assert "the handler broke" in page
    # quiet: no parameter-cell parse warning, no kernel warning about TCP without encryption
    err = capfd.readouterr().err + caplog.text
    assert "Unable to parse" not in err and "without encryption" not in err, err


def test_cli_usage_errors_exit_2_before_any_broker(capsys) -> None:
    from offsetlab.lab.suite import main

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert main(parser.parse_args(["--only", "99", "--broker", "kafka"])) == 2
    assert "only=99 matches no notebook" in capsys.readouterr().out
    assert main(parser.parse_args(["--profile", "no-such-profile"])) == 2
    assert "no profile 'no-such-profile'" in capsys.readouterr().out
    assert main(parser.parse_args(["-p", "novalue"])) == 2
