"""Run every notebook headless on one broker and write a run folder with a report.

    offsetlab run [--profile fast|seed|...] [--only 01,05] [--broker auto|kafka|tansu|...]
                  [--bootstrap-servers HOST:PORT] [-p name=value | -p 01.name=value ...]

One broker is started for the whole run (or the external one is used); every notebook in
``notebooks/`` (sorted; ``--only`` picks number prefixes) is executed by papermill with the
profile's parameters, the ``-p`` overrides and the runner's own ``bootstrap_servers``,
``broker_kind`` and ``run_id``, into ``data/runs/<run-id>/<notebook>.ipynb`` (each notebook
writes its data under ``data/runs/<run-id>/<notebook>/``). A failing notebook does not stop
the others. ``run.json`` is rewritten after every step, so an interrupted run (Ctrl-C,
SIGTERM) stays readable; ``report.html`` is written at the end, also for partial runs. The
exit status is 0 when every notebook passed, 1 when one did not, 2 for a usage error and 130
when interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
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

log = logging.getLogger(__name__)

__all__ = ["SuiteConfig", "SuiteResult", "run_suite", "select_notebooks", "parse_overrides",
           "make_run_id", "versions", "add_arguments", "main", "BROKER_KINDS"]

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


def versions() -> dict[str, str]:
    """Versions that shape the results: offsetlab, kafka-python, papermill, Python."""
    import offsetlab

    out = {"offsetlab": getattr(offsetlab, "__version__", "unknown"),
           "python": platform.python_version()}
    for dist in ("kafka-python", "papermill", "pandas"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# -- execution ------------------------------------------------------------------------------
def papermill_executor(source: Path, output: Path, parameters: Mapping[str, Any], *,
                       cwd: Path, cell_timeout_s: float | None) -> None:
    """Execute with papermill (kernel ``python3``), saving the output after every cell."""
    import papermill

    papermill.execute_notebook(str(source), str(output), parameters=dict(parameters),
                               kernel_name="python3", cwd=str(cwd), progress_bar=False,
                               request_save_on_cell_execute=True,
                               execution_timeout=cell_timeout_s)


def _error(exc: BaseException) -> dict[str, Any]:
    """What run.json says about a failure: papermill's cell error, or the exception."""
    if hasattr(exc, "ename") and hasattr(exc, "evalue"):
        return {"type": str(exc.ename), "message": str(exc.evalue),
                "cell": getattr(exc, "exec_count", None)}
    return {"type": type(exc).__name__, "message": str(exc), "cell": None}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Record:
    """run.json, rewritten atomically after every change."""

    def __init__(self, path: Path, doc: dict[str, Any]) -> None:
        self.path = path
        self.doc = doc
        self.write()

    def notebook(self, stem: str) -> dict[str, Any]:
        return next(nb for nb in self.doc["notebooks"] if nb["name"] == stem)

    def write(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")
        os.replace(tmp, self.path)


def _broker_info(broker: Any) -> dict[str, Any]:
    return {"kind": getattr(broker, "kind", None), "version": getattr(broker, "version", None),
            "bootstrap_servers": getattr(broker, "bootstrap_servers", None),
            "cold_start_s": getattr(broker, "cold_start_s", None)}


def run_suite(config: SuiteConfig, *, broker_factory: BrokerFactory | None = None,
              execute: Executor = papermill_executor) -> SuiteResult:
    """Run the selected notebooks on one broker; see the module docstring.

    ``broker_factory(kind, bootstrap_servers=...)`` is a context manager yielding a broker
    handle (default :func:`offsetlab.brokers.start_broker`); ``execute`` runs one notebook.
    Raises :class:`ConfigError` / :class:`ProfileError` before anything starts when the
    selection, profile or overrides are wrong."""
    nb_dir = config.notebooks_dir or notebooks_dir()
    root = config.runs_dir or runs_dir()
    notebooks = discover_notebooks(nb_dir)
    selected = select_notebooks(notebooks, config.only)
    profile = load_profile(config.profile, config.profiles_dir or profiles_dir())
    check_profile(profile, notebooks, name=config.profile)
    params = {stem: dict(profile.get(stem, {})) for stem in selected}
    _apply_overrides(selected, params, config.overrides)

    root.mkdir(parents=True, exist_ok=True)
    if config.runs_dir:  # the notebooks' kernels resolve their output folder from this
        os.environ["OFFSETLAB_RUNS_DIR"] = str(Path(root).resolve())
    run_id = config.run_id or make_run_id(config.profile, root)
    run_dir = root / run_id
    run_dir.mkdir(parents=True, exist_ok=config.run_id is not None)
    record = _Record(run_dir / "run.json", {
        "run_id": run_id, "profile": config.profile, "status": "starting",
        "started_at": _now(), "finished_at": None, "duration_s": None,
        "broker": {"requested": config.broker}, "versions": versions(),
        "overrides": {t: v for t, v in config.overrides}, "error": None,
        "notebooks": [{"name": stem, "source": str(path), "output": f"{stem}.ipynb",
                       "status": "pending", "started_at": None, "duration_s": None,
                       "parameters": params[stem], "error": None}
                      for stem, path in selected.items()],
    })
    result = SuiteResult(run_id=run_id, run_dir=run_dir, status="starting",
                         notebooks={stem: "pending" for stem in selected})
    t_run = t0 = time.monotonic()
    if broker_factory is None:
        from offsetlab.brokers import start_broker as broker_factory
    bar = _progress(len(selected), config.progress)
    current: str | None = None
    try:
        try:
            broker_cm = broker_factory(config.broker, bootstrap_servers=config.bootstrap_servers)
            broker = broker_cm.__enter__()
        except Exception as exc:
            log.error("broker %s did not start: %s", config.broker, exc)
            record.doc["error"] = {"stage": "broker", **_error(exc)}
            _skip_rest(record, result, "the broker did not start")
            record.doc["status"] = result.status = "failed"
            return result
        try:
            record.doc["broker"].update(_broker_info(broker))
            record.doc["status"] = result.status = "running"
            record.write()
            for stem, source in selected.items():
                current = stem
                entry = record.notebook(stem)
                if not getattr(broker, "running", True):
                    _skip_rest(record, result, "the broker exited during the run")
                    record.doc["error"] = {"stage": "broker", "type": "BrokerExited",
                                           "message": f"broker exited before {stem}", "cell": None}
                    break
                run_params = {**params[stem], "bootstrap_servers": broker.bootstrap_servers,
                              "broker_kind": broker.kind, "run_id": run_id}
                entry.update(status="running", started_at=_now(), parameters=run_params)
                result.notebooks[stem] = "running"
                record.write()
                bar.set_description(stem)
                t0 = time.monotonic()
                try:
                    execute(source, run_dir / f"{stem}.ipynb", run_params, cwd=nb_dir,
                            cell_timeout_s=config.cell_timeout_s)
                except Exception as exc:
                    entry.update(status="failed", error=_error(exc))
                    log.warning("%s failed: %s", stem, entry["error"])
                else:
                    entry["status"] = "passed"
                entry["duration_s"] = round(time.monotonic() - t0, 2)
                result.notebooks[stem] = entry["status"]
                current = None
                record.write()
                bar.write(f"{entry['status']:>7}  {stem}  ({entry['duration_s']:.1f} s)"
                          + (f"  {entry['error']['type']}: {entry['error']['message'][:120]}"
                             if entry["error"] else ""))
                bar.update(1)
                bar.set_postfix(failed=sum(s == "failed" for s in result.notebooks.values()))
            statuses = result.notebooks.values()
            result.status = "passed" if all(s == "passed" for s in statuses) else "failed"
        finally:
            broker_cm.__exit__(None, None, None)  # stops the broker on every exit path
    except KeyboardInterrupt:
        if current is not None:
            entry = record.notebook(current)
            entry.update(status="interrupted",
                         error={"type": "KeyboardInterrupt", "message": "run interrupted",
                                "cell": None})
            if entry["started_at"] and entry["duration_s"] is None:
                entry["duration_s"] = round(time.monotonic() - t0, 2)
            result.notebooks[current] = "interrupted"
        _skip_rest(record, result, "the run was interrupted")
        result.status = "interrupted"
        bar.write("interrupted: the broker is stopped; the partial run stays readable")
    finally:
        bar.close()
        record.doc.update(status=result.status, finished_at=_now(),
                          duration_s=round(time.monotonic() - t_run, 2))
        record.write()
        if config.report:
            result.report = _write_report(run_dir, record)
    return result


def _skip_rest(record: _Record, result: SuiteResult, why: str) -> None:
    for entry in record.doc["notebooks"]:
        if entry["status"] == "pending":
            entry.update(status="skipped", error={"type": "Skipped", "message": why, "cell": None})
            result.notebooks[entry["name"]] = "skipped"
    record.write()


def _write_report(run_dir: Path, record: _Record) -> Path | None:
    from .report import write_report

    try:
        return write_report(run_dir)
    except Exception as exc:  # the run's results must not be hidden by a report bug
        log.exception("report for %s could not be written", run_dir)
        record.doc["report_error"] = _error(exc)
        record.write()
        return None


class _NoBar:
    def set_description(self, *_: Any) -> None: ...
    def set_postfix(self, **_: Any) -> None: ...
    def update(self, *_: Any) -> None: ...
    def close(self) -> None: ...

    def write(self, text: str) -> None:
        print(text, flush=True)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="notebook", dynamic_ncols=True)


# -- command line ---------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``offsetlab run`` options."""
    parser.add_argument("--profile", default="fast",
                        help="data/profiles/<name>.yaml: fast (the notebooks' defaults), seed, ...")
    parser.add_argument("--only", action="append", default=[], metavar="01,05",
                        help="number prefixes (or stems) of the notebooks to run; repeatable")
    parser.add_argument("--broker", choices=BROKER_KINDS, default="auto",
                        help="broker for the whole run (default auto)")
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
            overrides=parse_overrides(args.param), run_id=args.run_id,
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
