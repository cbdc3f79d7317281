"""Running the selected notebooks on N slots at once, each slot on its own broker.

A slot is a thread with a broker: slot 0 starts the requested kind (``auto`` is resolved
there, once); the other slots start a broker of the kind slot 0 got, or share it when it is
``external`` (not ours to multiply). Slots take the next notebook from one queue ordered
longest-expected first (:func:`schedule`), so the longest notebook never starts last. A
notebook still starts its own dedicated brokers where it does so when run alone.

Bookkeeping happens under one lock: run.json (:class:`Record`) is rewritten atomically on
every change, the progress bar shows the running, passed and failed counts, and one line
is printed per finished notebook. A failing notebook does not stop the others. A slot whose
broker exits stops taking notebooks (the others go on); notebooks no slot can run any more
are marked skipped. Interrupted (Ctrl-C, SIGTERM, or an executor raising KeyboardInterrupt):
no notebook starts any more, running ones are marked ``interrupted``, their kernels get
SIGINT (a cell's ``with`` blocks stop their brokers) and SIGKILL after
:data:`KILL_AFTER_S`, and every slot stops its broker before :meth:`Pool.run` returns.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from offsetlab.bus.deadline import Deadline

log = logging.getLogger(__name__)

__all__ = ["EXPECTED_S", "expected_durations", "schedule", "Record", "Pool", "progress",
           "error_of", "now"]

#: Seconds each notebook took on the fast profile, run one at a time (``-j 1``; run.json's
#: ``duration_s``, one full run after issue 12's client sections) on the 2-core machine of the
#: README's time-budget table, which shows the same numbers. Used for notebooks no earlier
#: run of the same profile has a duration for (a fresh clone); a notebook in neither is
#: scheduled first, since it may be the longest.
EXPECTED_S: dict[str, float] = {
    "00_broker_smoke": 9.8,
    "01_run_blocking": 120.7,
    "02_errors_and_events": 89.2,
    "03_batch_failure": 48.2,
    "04_manual_commit_loss": 99.6,
    "05_main_topic_retry": 115.9,
    "06_retry_topic": 84.8,
    "07_pause_on_dependency": 84.4,
    "08_event_bus_end_to_end": 19.1,
    "09_client_conformance": 48.4,
    "10_cluster_failover": 44.8,
}
#: after an interrupt, kernels that are still running this long after their SIGINT are killed
KILL_AFTER_S = 10.0
#: ... and slots still not done this long after that are left to the guard processes
GIVE_UP_AFTER_S = 45.0
#: earlier runs read for expected durations (the newest first)
RECENT_RUNS = 20


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def error_of(exc: BaseException) -> dict[str, Any]:
    """What run.json says about a failure: papermill's cell error, or the exception."""
    if hasattr(exc, "ename") and hasattr(exc, "evalue"):
        return {"type": str(exc.ename), "message": str(exc.evalue),
                "cell": getattr(exc, "exec_count", None)}
    return {"type": type(exc).__name__, "message": str(exc), "cell": None}


# -- scheduling ---------------------------------------------------------------------------------
def expected_durations(stems: Iterable[str], runs_root: Path | None, profile: str,
                       table: Mapping[str, float] | None = None) -> dict[str, float | None]:
    """Expected seconds per notebook: its duration in the newest earlier run of ``profile``
    under ``runs_root`` where it passed (of the :data:`RECENT_RUNS` newest run folders), else
    ``table`` (default :data:`EXPECTED_S`, the fast profile) when the profile is ``fast``,
    else None (unknown)."""
    stems = list(stems)
    table = EXPECTED_S if table is None else table
    out: dict[str, float | None] = {s: (table.get(s) if profile == "fast" else None)
                                    for s in stems}
    found: set[str] = set()
    for doc in _recent_runs(runs_root, profile):
        for nb in doc.get("notebooks") or []:
            name, dur = nb.get("name"), nb.get("duration_s")
            if (name in out and name not in found and nb.get("status") == "passed"
                    and isinstance(dur, int | float)):
                out[name] = float(dur)
                found.add(name)
        if len(found) == len(out):
            break
    return out


def _recent_runs(root: Path | None, profile: str) -> Iterable[dict[str, Any]]:
    if root is None or not root.is_dir():
        return []
    files = []
    for path in root.glob("*/run.json"):
        try:
            files.append((path.stat().st_mtime, path))
        except OSError:
            continue
    docs = []
    for _, path in sorted(files, reverse=True)[:RECENT_RUNS]:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("profile") == profile:
            docs.append(doc)
    docs.sort(key=lambda d: str(d.get("started_at") or ""), reverse=True)
    return docs


def schedule(stems: Sequence[str], expected: Mapping[str, float | None]) -> list[str]:
    """Longest expected first (unknown ones before all, they may be the longest); equal
    expectations keep their order. With N slots this is the LPT rule: the run ends at most
    4/3 of the best possible order's time."""
    return sorted(stems, key=lambda s: (expected.get(s) is not None, -(expected.get(s) or 0.0)))


# -- run.json -----------------------------------------------------------------------------------
class Record:
    """run.json, rewritten atomically after every change; ``lock`` guards ``doc``."""

    def __init__(self, path: Path, doc: dict[str, Any]) -> None:
        self.path = path
        self.doc = doc
        self.lock = threading.RLock()
        self.write()

    def notebook(self, stem: str) -> dict[str, Any]:
        return next(nb for nb in self.doc["notebooks"] if nb["name"] == stem)

    def write(self) -> None:
        with self.lock:
            tmp = self.path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")
            os.replace(tmp, self.path)


# -- the pool -----------------------------------------------------------------------------------
class Pool:
    """One run's slots; :meth:`run` blocks until every slot is done (see the module doc)."""

    def __init__(self, *, record: Record, statuses: dict[str, str], order: Sequence[str],
                 sources: Mapping[str, Path], params: Mapping[str, Mapping[str, Any]],
                 run_id: str, run_dir: Path, cwd: Path, jobs: int, broker: str,
                 bootstrap_servers: str | None, cell_timeout_s: float | None,
                 broker_factory: Callable[..., Any], execute: Callable[..., None],
                 bar: Any, on_broker: Callable[[Any], None] | None = None) -> None:
        self.record, self.statuses = record, statuses
        self.queue = list(order)
        self.sources, self.params = sources, params
        self.run_id, self.run_dir, self.cwd = run_id, run_dir, cwd
        self.jobs, self.kind = jobs, broker
        self.bootstrap_servers, self.cell_timeout_s = bootstrap_servers, cell_timeout_s
        self.broker_factory, self.execute, self.bar = broker_factory, execute, bar
        self.on_broker = on_broker
        self.stop = threading.Event()
        self.interrupted = False
        self.first_ready = threading.Event()  # slot 0 started its broker, or failed to
        self.first_broker: Any = None
        self.started: dict[str, float] = {}  # running stem -> monotonic start
        self.broker_errors: list[dict[str, Any]] = []
        self.done = [threading.Event() for _ in range(jobs)]  # slot i has stopped its broker
        self.lock = record.lock
        record.doc["broker"]["slots"] = [
            {"slot": i, "kind": None, "bootstrap_servers": None, "cold_start_s": None,
             "shared": False, "error": None} for i in range(jobs)]

    # -- main thread ----------------------------------------------------------------------
    def run(self) -> None:
        # Slots report they are done through events, not Thread.join/is_alive: a Ctrl-C that
        # interrupts Thread.join (CPython 3.11, bpo-45274's fix) can mark a thread that still
        # runs as stopped, and this method would return while a slot still stops its broker.
        for i in range(self.jobs):
            threading.Thread(target=self._slot, args=(i,), name=f"offsetlab-slot-{i}",
                             daemon=True).start()
        try:
            _wait(self.done)
        except KeyboardInterrupt:
            self.interrupt()
        if not self.interrupted:
            return
        # a slot may have raised the interrupt itself; either way: stop what runs, then wait
        try:
            if not _wait(self.done, KILL_AFTER_S):
                self._kill()
                _wait(self.done, GIVE_UP_AFTER_S)
        except KeyboardInterrupt:  # a second Ctrl-C: kill now, wait a little
            self._kill()
            try:
                _wait(self.done, 10.0)
            except KeyboardInterrupt:
                pass
        busy = [str(i) for i, ev in enumerate(self.done) if not ev.is_set()]
        if busy:
            log.warning("slot(s) %s did not stop in time; their brokers stop with this process "
                        "(guard)", ", ".join(busy))

    def interrupt(self, why: str = "the run was interrupted") -> None:
        """Stop the run: nothing new starts, running notebooks are marked and signalled."""
        with self.lock:
            if self.interrupted:
                return
            self.interrupted = True
            self.stop.set()
            t = time.monotonic()
            for stem, t0 in self.started.items():
                entry = self.record.notebook(stem)
                entry.update(status="interrupted", duration_s=round(t - t0, 2),
                             error={"type": "KeyboardInterrupt", "message": "run interrupted",
                                    "cell": None})
                self.statuses[stem] = "interrupted"
            self._skip_queue(why)
            self.bar.write("interrupted: stopping kernels and brokers; the partial run stays "
                           "readable")
        signal_kernels = getattr(self.execute, "interrupt", None)
        if signal_kernels is not None:
            signal_kernels()

    def _kill(self) -> None:
        kill = getattr(self.execute, "kill", None)
        if kill is not None:
            kill()

    def finish(self) -> None:
        """After :meth:`run`: notebooks no slot ran are skipped (and why)."""
        with self.lock:
            if self.queue:
                err = self.broker_errors[-1] if self.broker_errors else {
                    "type": "NoSlot", "message": "no slot was left to run it", "cell": None}
                self.record.doc["error"] = {"stage": "broker", **err}
                why = ("the broker did not start" if err["type"] != "BrokerExited"
                       else "the broker exited during the run")
                self._skip_queue(why)

    def _skip_queue(self, why: str) -> None:
        for stem in self.queue:
            entry = self.record.notebook(stem)
            entry.update(status="skipped", error={"type": "Skipped", "message": why, "cell": None})
            self.statuses[stem] = "skipped"
        self.queue.clear()
        self.record.write()

    # -- slot threads ---------------------------------------------------------------------
    def _slot(self, i: int) -> None:
        try:
            self._run_slot(i)
        finally:
            self.done[i].set()

    def _run_slot(self, i: int) -> None:
        try:
            got = self._start_broker(i)
        except KeyboardInterrupt:
            self.interrupt()
            return
        if got is None:
            return
        broker, cm = got
        try:
            while not self.stop.is_set():
                with self.lock:
                    if not self.queue:
                        break
                    if not getattr(broker, "running", True):
                        self._broker_failed(i, {"type": "BrokerExited", "message":
                                                f"the broker of slot {i} exited before "
                                                f"{self.queue[0]}", "cell": None})
                        break
                    stem = self.queue.pop(0)
                    self._mark_running(i, stem, broker)
                self._execute(stem)
        except KeyboardInterrupt:
            self.interrupt()
        finally:
            if cm is not None:
                try:
                    cm.__exit__(None, None, None)  # stops the broker on every exit path
                except Exception:
                    log.exception("stopping the broker of slot %d failed", i)

    def _start_broker(self, i: int) -> tuple[Any, Any] | None:
        """(handle, context manager or None when shared), or None when the slot has none."""
        info = self.record.doc["broker"]["slots"][i]
        if i > 0 and self.kind not in ("kafka", "tansu", "testcontainers"):
            self.first_ready.wait()  # auto and external: slot 0 decides the kind
            first = self.first_broker
            if first is None:
                return None
            if first.kind == "external":
                with self.lock:
                    info.update(kind=first.kind, bootstrap_servers=first.bootstrap_servers,
                                shared=True)
                    self.record.write()
                return first, None
            kind, servers = first.kind, None
        else:
            kind, servers = self.kind, self.bootstrap_servers
        if self.stop.is_set():
            if i == 0:
                self.first_ready.set()
            return None
        try:
            cm = self.broker_factory(kind, bootstrap_servers=servers)
            broker = cm.__enter__()
        except Exception as exc:
            log.error("slot %d: broker %s did not start: %s", i, kind, exc)
            self._broker_failed(i, error_of(exc))
            if i == 0:
                self.first_ready.set()
            return None
        with self.lock:
            info.update(kind=getattr(broker, "kind", None),
                        bootstrap_servers=getattr(broker, "bootstrap_servers", None),
                        cold_start_s=getattr(broker, "cold_start_s", None))
            if self.on_broker is not None:
                self.on_broker(broker)
            self.record.write()
        if i == 0:
            self.first_broker = broker
            self.first_ready.set()
        return broker, cm

    def _broker_failed(self, i: int, err: dict[str, Any]) -> None:
        with self.lock:
            self.record.doc["broker"]["slots"][i]["error"] = err
            self.broker_errors.append(err)
            self.record.write()

    def _mark_running(self, i: int, stem: str, broker: Any) -> None:
        """Under the lock: the notebook is running (run.json says so before it starts)."""
        run_params = {**self.params[stem], "bootstrap_servers": broker.bootstrap_servers,
                      "broker_kind": broker.kind, "run_id": self.run_id}
        self.record.notebook(stem).update(status="running", started_at=now(), slot=i,
                                          parameters=run_params)
        self.statuses[stem] = "running"
        self.started[stem] = time.monotonic()
        self.record.write()
        self._show()

    def _execute(self, stem: str) -> None:
        entry = self.record.notebook(stem)
        error: dict[str, Any] | None = None
        try:
            self.execute(self.sources[stem], self.run_dir / f"{stem}.ipynb", entry["parameters"],
                         cwd=self.cwd, cell_timeout_s=self.cell_timeout_s)
        except KeyboardInterrupt:
            self.interrupt()  # marks this one interrupted
        except Exception as exc:
            error = error_of(exc)
        with self.lock:
            t0 = self.started.pop(stem)
            if entry["status"] == "interrupted":  # interrupt() marked it; keep that
                pass
            elif self.stop.is_set():  # stopped by the interrupt while it ran
                entry.update(status="interrupted", error={
                    "type": "KeyboardInterrupt", "message": "run interrupted", "cell": None})
            elif error is not None:
                entry.update(status="failed", error=error)
                log.warning("%s failed: %s", stem, error)
            else:
                entry["status"] = "passed"
            if entry.get("duration_s") is None:
                entry["duration_s"] = round(time.monotonic() - t0, 2)
            self.statuses[stem] = entry["status"]
            self.record.write()
            err = entry["error"]
            self.bar.write(f"{entry['status']:>7}  {stem}  ({entry['duration_s']:.1f} s)"
                           + (f"  {err['type']}: {err['message'][:120]}" if err else ""))
            self._show(finished=1)

    def _show(self, finished: int = 0) -> None:
        """Under the lock: the bar names the running notebooks (number prefixes) and counts
        running, passed and failed ones; one refresh per change."""
        counts = {s: sum(v == s for v in self.statuses.values())
                  for s in ("running", "passed", "failed")}
        self.bar.set_description(" ".join(s.split("_")[0] for s in self.started) or "done",
                                 refresh=False)
        self.bar.set_postfix(counts, refresh=False)
        if finished:
            self.bar.update(finished)
        else:
            self.bar.refresh()


def _wait(events: Sequence[threading.Event], timeout_s: float | None = None) -> bool:
    """Wait until every event is set (in short steps, so Ctrl-C reaches the main thread);
    True when they all were within ``timeout_s``."""
    deadline = Deadline(timeout_s)
    for ev in events:
        while not ev.wait(0.2):
            if deadline.expired():
                return False
    return True


# -- progress ---------------------------------------------------------------------------------
class NoBar:
    def set_description(self, *_: Any, **__: Any) -> None: ...
    def set_postfix(self, *_: Any, **__: Any) -> None: ...
    def update(self, *_: Any) -> None: ...
    def refresh(self) -> None: ...
    def close(self) -> None: ...

    def write(self, text: str) -> None:
        print(text, flush=True)


def progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="notebook", dynamic_ncols=True)
