"""Run every notebook headless, several at once, and write a run folder with a report.

    offsetlab run [--profile fast|seed|...] [--only 01,05] [-j N] [--broker auto|kafka|tansu|...]
                  [--bootstrap-servers HOST:PORT] [-p name=value | -p 01.name=value ...]

Every notebook in ``notebooks/`` (sorted; ``--only`` picks number prefixes) is executed by
papermill with the profile's parameters, the ``-p`` overrides and the runner's own
``bootstrap_servers``, ``broker_kind`` and ``run_id``, into
``data/runs/<run-id>/<notebook>.ipynb`` (each notebook writes its data under
``data/runs/<run-id>/<notebook>/``).

``-j N`` runs N notebooks at once, each slot on its own broker of the requested kind (an
external cluster is shared), longest-expected first (``offsetlab.lab.suite_pool``); the
default N is :func:`~offsetlab.lab.suite_env.default_jobs` (one per core, at least 2, as many
as fit in memory at 2 GB a slot). Notebooks still start their own dedicated brokers where
they need their own settings. Findings do not depend on N (a test compares ``-j 1`` with
``-j 2``).

A failing notebook does not stop the others. ``run.json`` is rewritten after every step, so
an interrupted run (Ctrl-C, SIGTERM: every kernel and broker is stopped) stays readable;
its ``environment`` records the checkout, versions, machine and ``jobs``. ``report.html``
is written at the end, also for partial runs. The exit status is 0 when every notebook
passed, 1 when one did not, 2 for a usage error and 130 when interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from offsetlab.bus.errors import ConfigError

from .paths import notebooks_dir, profiles_dir, runs_dir
from .profiles import (
    ProfileError,
    check_profile,
    discover_notebooks,
    load_profile,
    notebook_parameters,
)
from .suite_env import default_jobs, environment, versions
from .suite_pool import Pool, Record, error_of, expected_durations, now, progress, schedule

log = logging.getLogger(__name__)

__all__ = ["SuiteConfig", "SuiteResult", "run_suite", "select_notebooks", "parse_overrides",
           "make_run_id", "versions", "environment", "default_jobs", "add_arguments", "main",
           "BROKER_KINDS"]

#: what ``--broker`` accepts (offsetlab.brokers.KINDS, repeated to keep argparse import-light)
BROKER_KINDS = ("auto", "kafka", "tansu", "testcontainers", "external")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NUMBER = re.compile(r"^(\d+)")


class Executor(Protocol):
    """Runs one notebook: raises on failure (papermill's ``PapermillExecutionError`` when a
    cell raised), returns normally when every cell ran."""

    def __call__(self, source: Path, output: Path, parameters: Mapping[str, Any], *,
                 cwd: Path, cell_timeout_s: float | None) -> None: ...


BrokerFactory = Callable[..., AbstractContextManager[Any]]


@dataclass(frozen=True, kw_only=True)
class SuiteConfig:
    """What one ``offsetlab run`` does. Paths default to the checkout's folders."""

    profile: str = "fast"
    #: number prefixes (``"01"``, ``"5"``) or full stems; empty: every notebook
    only: tuple[str, ...] = ()
    broker: str = "auto"
    #: for ``broker="external"`` (else ``$KAFKA_BOOTSTRAP_SERVERS``) or ``"auto"``
    bootstrap_servers: str | None = None
    #: ``(target, value)``: target ``name`` (every selected notebook that has the parameter)
    #: or ``<number-or-stem>.name`` (one notebook)
    overrides: tuple[tuple[str, Any], ...] = ()
    run_id: str | None = None
    #: papermill's per-cell timeout; None: no limit
    cell_timeout_s: float | None = 900.0
    #: notebooks run at once, each slot on its own broker; None: :func:`default_jobs`
    jobs: int | None = None
    progress: bool = True
    report: bool = True
    notebooks_dir: Path | None = None
    runs_dir: Path | None = None
    profiles_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.broker not in BROKER_KINDS:
            raise ConfigError(f"broker={self.broker!r} is not a broker kind; use one of "
                              f"{', '.join(BROKER_KINDS)}")
        if self.broker == "external" and not (self.bootstrap_servers
                                              or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")):
            raise ConfigError("broker='external' needs bootstrap_servers (--bootstrap-servers "
                              "HOST:PORT) or KAFKA_BOOTSTRAP_SERVERS in the environment")
        if self.run_id is not None and not _RUN_ID.match(self.run_id):
            raise ConfigError(f"run_id={self.run_id!r}: use letters, digits, '.', '_' or '-'")
        if self.cell_timeout_s is not None and self.cell_timeout_s <= 0:
            raise ConfigError(f"cell_timeout_s={self.cell_timeout_s!r} must be positive or None")
        if self.jobs is not None and (isinstance(self.jobs, bool) or self.jobs < 1):
            raise ConfigError(f"jobs={self.jobs!r} must be 1 or more (or None: the default rule)")
        if not self.profile or "/" in self.profile:
            raise ConfigError(f"profile={self.profile!r} must be the stem of a file in "
                              "data/profiles/ (e.g. 'fast' or 'seed')")
        for target, _ in self.overrides:
            if not target or target.endswith(".") or target.startswith("."):
                raise ConfigError(f"override {target!r} must be 'name' or 'notebook.name'")


@dataclass
class SuiteResult:
    run_id: str
    run_dir: Path
    status: str
    notebooks: dict[str, str] = field(default_factory=dict)  # stem -> status
    report: Path | None = None

    @property
    def exit_code(self) -> int:
        if self.status == "interrupted":
            return 130
        return 0 if self.status == "passed" else 1


# -- selection and parameters ---------------------------------------------------------------
def _number(stem: str) -> int | None:
    m = _NUMBER.match(stem)
    return int(m.group(1)) if m else None


def _matches(selector: str, stem: str) -> bool:
    if selector == stem:
        return True
    return selector.isdigit() and _number(stem) == int(selector)


def select_notebooks(notebooks: Mapping[str, Path], only: Sequence[str]) -> dict[str, Path]:
    """The notebooks ``only`` picks (number prefixes or stems; empty -> all), in order."""
    if not only:
        return dict(notebooks)
    unmatched = [s for s in only if not any(_matches(s, stem) for stem in notebooks)]
    if unmatched:
        raise ConfigError(f"only={','.join(unmatched)} matches no notebook (notebooks: "
                          f"{', '.join(notebooks) or 'none'})")
    return {stem: path for stem, path in notebooks.items() if any(_matches(s, stem) for s in only)}


def parse_value(text: str) -> Any:
    """A ``-p`` value as YAML would read it: ``3`` -> 3, ``0.5``, ``true``, ``null``,
    ``[1, 2]``; anything else stays a string."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(items: Sequence[str]) -> tuple[tuple[str, Any], ...]:
    """``["gap_s=1", "01.members=3"]`` -> ``(("gap_s", 1), ("01.members", 3))``."""
    out = []
    for item in items:
        target, sep, value = item.partition("=")
        if not sep or not target.strip():
            raise ConfigError(f"-p {item!r}: expected name=value or notebook.name=value")
        out.append((target.strip(), parse_value(value)))
    return tuple(out)


def _apply_overrides(selected: Mapping[str, Path], params: dict[str, dict[str, Any]],
                     overrides: Sequence[tuple[str, Any]]) -> None:
    declared = {stem: notebook_parameters(path) for stem, path in selected.items()}
    for target, value in overrides:
        nb_sel, _, name = target.rpartition(".")
        hits = [stem for stem in selected
                if (not nb_sel or _matches(nb_sel, stem)) and name in declared[stem]]
        if not hits:
            where = f"notebook {nb_sel!r}" if nb_sel else "any selected notebook"
            raise ConfigError(f"-p {target}=...: {name!r} is not a parameter of {where}")
        for stem in hits:
            params[stem][name] = value


def make_run_id(profile: str, root: Path, now: datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-<profile>`` (UTC), with ``-2``, ``-3``... if that folder exists."""
    base = f"{(now or datetime.now(UTC)):%Y%m%d-%H%M%S}-{profile}"
    run_id, n = base, 1
    while (root / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


# -- execution ------------------------------------------------------------------------------
def _broker_info(broker: Any) -> dict[str, Any]:
    return {"kind": getattr(broker, "kind", None), "version": getattr(broker, "version", None),
            "bootstrap_servers": getattr(broker, "bootstrap_servers", None),
            "cold_start_s": getattr(broker, "cold_start_s", None)}


def run_suite(config: SuiteConfig, *, broker_factory: BrokerFactory | None = None,
              execute: Executor | None = None) -> SuiteResult:
    """Run the selected notebooks on ``config.jobs`` slots; see the module docstring.

    ``broker_factory(kind, bootstrap_servers=...)`` is a context manager yielding a broker
    handle (default :func:`offsetlab.brokers.start_broker`); ``execute`` runs one notebook
    (default: a new :class:`~offsetlab.lab.suite_exec.PapermillExecutor`; an executor with
    ``interrupt()`` / ``kill()`` methods gets them called when the run is interrupted).
    Raises :class:`ConfigError` / :class:`ProfileError` before anything starts when the
    selection, profile or overrides are wrong."""
    nb_dir = config.notebooks_dir or notebooks_dir()
    root = Path(config.runs_dir or runs_dir()).resolve()
    notebooks = discover_notebooks(nb_dir)
    selected = select_notebooks(notebooks, config.only)
    profile = load_profile(config.profile, config.profiles_dir or profiles_dir())
    check_profile(profile, notebooks, name=config.profile)
    params = {stem: dict(profile.get(stem, {})) for stem in selected}
    _apply_overrides(selected, params, config.overrides)
    jobs = max(1, min(config.jobs or default_jobs(), len(selected) or 1))
    order = schedule(list(selected), expected_durations(selected, root, config.profile))

    root.mkdir(parents=True, exist_ok=True)
    if config.runs_dir:  # the notebooks' kernels resolve their output folder from this
        os.environ["OFFSETLAB_RUNS_DIR"] = str(root)
    run_id = config.run_id or make_run_id(config.profile, root)
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=config.run_id is not None)
    record = Record(run_dir / "run.json", {
        "run_id": run_id, "profile": config.profile, "status": "starting",
        "started_at": now(), "finished_at": None, "duration_s": None, "jobs": jobs,
        "broker": {"requested": config.broker}, "versions": versions(),
        "environment": environment(jobs), "order": order,
        "overrides": {t: v for t, v in config.overrides}, "error": None,
        "notebooks": [{"name": stem, "source": str(path), "output": f"{stem}.ipynb",
                       "status": "pending", "slot": None, "started_at": None,
                       "duration_s": None, "parameters": params[stem], "error": None}
                      for stem, path in selected.items()],
    })
    result = SuiteResult(run_id=run_id, run_dir=run_dir, status="starting",
                         notebooks={stem: "pending" for stem in selected})
    t_run = time.monotonic()
    if broker_factory is None:
        from offsetlab.brokers import start_broker as broker_factory
    if execute is None:
        from .suite_exec import PapermillExecutor

        execute = PapermillExecutor()

    def first_broker(broker: Any) -> None:  # called under the record's lock
        doc = record.doc
        if doc["broker"].get("kind") is None:
            doc["broker"].update(_broker_info(broker))
            doc["environment"]["kafka"] = getattr(broker, "version", None)
        if doc["status"] == "starting":
            doc["status"] = result.status = "running"

    bar = progress(len(selected), config.progress)
    pool = Pool(record=record, statuses=result.notebooks, order=order, sources=selected,
                params=params, run_id=run_id, run_dir=run_dir, cwd=nb_dir, jobs=jobs,
                broker=config.broker, bootstrap_servers=config.bootstrap_servers,
                cell_timeout_s=config.cell_timeout_s, broker_factory=broker_factory,
                execute=execute, bar=bar, on_broker=first_broker)
    try:
        try:
            pool.run()
        except KeyboardInterrupt:  # between the pool's own handlers
            pool.interrupt()
        pool.finish()
        if pool.interrupted:
            result.status = "interrupted"
        else:
            statuses = result.notebooks.values()
            result.status = "passed" if all(s == "passed" for s in statuses) else "failed"
    finally:
        bar.close()
        with record.lock:
            record.doc.update(status=result.status, finished_at=now(),
                              duration_s=round(time.monotonic() - t_run, 2))
            record.write()
        if config.report:
            result.report = _write_report(run_dir, record)
    return result


def _write_report(run_dir: Path, record: Record) -> Path | None:
    from .report import write_report

    try:
        return write_report(run_dir)
    except Exception as exc:  # the run's results must not be hidden by a report bug
        log.exception("report for %s could not be written", run_dir)
        with record.lock:
            record.doc["report_error"] = error_of(exc)
            record.write()
        return None


# -- command line ---------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``offsetlab run`` options."""
    parser.add_argument("--profile", default="fast",
                        help="data/profiles/<name>.yaml: fast (the notebooks' defaults), seed, ...")
    parser.add_argument("--only", action="append", default=[], metavar="01,05",
                        help="number prefixes (or stems) of the notebooks to run; repeatable")
    parser.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                        help="notebooks run at once, each on its own broker (default: one per core, "
                             f"at least 2, as memory allows: {default_jobs()} here)")
    parser.add_argument("--broker", choices=BROKER_KINDS, default="auto",
                        help="broker kind of the run's brokers, one per slot (default auto)")
    parser.add_argument("--bootstrap-servers", default=None,
                        help="an external cluster (with --broker external or auto)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="parameter override (YAML value), for every notebook that has NAME "
                             "or as NOTEBOOK.NAME=VALUE for one (e.g. -p 01.gap_s=3)")
    parser.add_argument("--run-id", default=None, help="default: <UTC time>-<profile>")
    parser.add_argument("--cell-timeout", type=float, default=900.0,
                        help="seconds a cell may run (default 900; 0: no limit)")
    parser.add_argument("--no-progress", action="store_true", help="plain lines, no progress bar")
    parser.add_argument("--no-report", action="store_true", help="skip report.html")


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(args: argparse.Namespace) -> int:
    """``offsetlab run``: exit 0 all passed, 1 a notebook failed, 2 usage, 130 interrupted."""
    try:
        config = SuiteConfig(
            profile=args.profile,
            only=tuple(s.strip() for item in args.only for s in item.split(",") if s.strip()),
            broker=args.broker, bootstrap_servers=args.bootstrap_servers,
            overrides=parse_overrides(args.param), run_id=args.run_id, jobs=args.jobs,
            cell_timeout_s=args.cell_timeout or None, progress=not args.no_progress,
            report=not args.no_report)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    if not getattr(args, "verbose", False):
        # the broker start-up probe retries connections and kafka-python logs every refusal;
        # a broker that never answers surfaces as a BrokerError in run.json and the report
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM stops like Ctrl-C
    try:
        result = run_suite(config)
    except (ConfigError, ProfileError) as exc:
        print(f"error: {exc}")
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    for line in _summary(result):
        print(line)
    return result.exit_code


def _summary(result: SuiteResult) -> Iterator[str]:
    counts: dict[str, int] = {}
    for status in result.notebooks.values():
        counts[status] = counts.get(status, 0) + 1
    yield f"run {result.run_id}: {result.status} (" + ", ".join(
        f"{n} {s}" for s, n in sorted(counts.items())) + ")"
    yield f"  run folder: {result.run_dir}"
    if result.report:
        yield f"  report:     {result.report}"
