"""What every notebook does the same way: its broker(s), its output folder, its findings.

A notebook's first code cells::

    lab = NotebookSession("01_run_blocking", bootstrap_servers=bootstrap_servers,
                          broker_kind=broker_kind, run_id=run_id)
    broker = lab.broker            # started here unless bootstrap_servers was given

and its last cell ``lab.close()``. Brokers also stop if the kernel dies (guard process) or
exits (atexit). Findings go through :meth:`NotebookSession.finding` so that they are printed
in one format (``name: value``) and saved to ``findings.json`` beside the other outputs.
"""

from __future__ import annotations

import atexit
import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from offsetlab.brokers import BrokerHandle, Capability, start_broker

from .findings import Finding, spread
from .paths import output_dir

log = logging.getLogger(__name__)


def inline_figures() -> bool:
    """Make a cell that returns a matplotlib ``Figure`` show it as a PNG (in JupyterLab, in
    papermill's executed notebooks and so in the report). IPython registers the PNG formatter
    for ``Figure`` only when the inline backend is loaded, which importing pyplot does in a
    kernel; our plots build ``Figure`` objects without pyplot, so without this a returned
    figure renders as ``<Figure size ...>`` text. False outside an IPython kernel."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    shell.run_line_magic("matplotlib", "inline")
    return True


class NotebookSession:
    """One notebook run: the shared broker, dedicated brokers, outputs and findings."""

    def __init__(self, name: str, *, bootstrap_servers: str | None = None,
                 broker_kind: str = "kafka", run_id: str | None = None,
                 broker_settings: Mapping[str, Any] | None = None) -> None:
        self.name = name
        #: the kind of this run's brokers: dedicated brokers are started of this kind even
        #: when the shared broker was given (the suite runner passes both)
        self.broker_kind = broker_kind
        self.shared_given = bool(bootstrap_servers)
        self.run_id = run_id
        self.out: Path = output_dir(name, run_id)
        self.findings: dict[str, Any] = {}
        #: ``{name: {"rule": ..., "measured": ...}}`` of the findings that have them
        self.finding_details: dict[str, Any] = {}
        self.measurements: dict[str, Any] = {}
        self._stack = ExitStack()
        # Client logs go to a file beside the outputs: a warning printed on stderr would be an
        # output nbval compares, and it is not a finding.
        logging.basicConfig(level=logging.INFO, force=True,
                            handlers=[logging.FileHandler(self.out / "notebook.log", mode="w")],
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._closed = False
        atexit.register(self.close)
        inline_figures()
        t0 = time.monotonic()
        self.broker: BrokerHandle = self._stack.enter_context(
            start_broker("external", bootstrap_servers=bootstrap_servers) if bootstrap_servers
            else start_broker(broker_kind, settings=broker_settings if broker_kind == "kafka" else None))
        self.measure("broker_ready_s", round(time.monotonic() - t0, 2))
        if broker_kind == "auto":
            self.broker_kind = self.broker.kind

    # -- brokers -------------------------------------------------------------------------
    def can_dedicate(self, *, settings: bool = False, restart: bool = False) -> tuple[bool, str]:
        """Whether this notebook's broker kind can start a dedicated broker with its own
        settings / restartable; and why not."""
        if self.broker_kind in ("external", "testcontainers"):
            return False, f"a {self.broker_kind!r} broker is not ours to configure or restart"
        if settings and self.broker_kind != "kafka":
            return False, f"a {self.broker_kind!r} broker takes no broker settings"
        if restart and self.broker_kind != "kafka":
            return False, f"a {self.broker_kind!r} broker cannot be restarted in place"
        return True, ""

    @contextmanager
    def dedicated(self, settings: Mapping[str, Any] | None = None, *,
                  restart: bool = False) -> Iterator[BrokerHandle | None]:
        """A broker of this notebook's kind for one part (own settings, stop/restart).
        Yields None where the kind cannot provide one; the caller states that as a finding."""
        ok, why = self.can_dedicate(settings=bool(settings), restart=restart)
        if not ok:
            log.warning("dedicated broker skipped: %s", why)
            yield None
            return
        with start_broker(self.broker_kind, settings=settings or None) as broker:
            if restart:
                assert broker.can(Capability.RESTARTABLE)
            yield broker

    # -- results -------------------------------------------------------------------------
    def finding(self, found: Finding | Sequence[Finding]) -> None:
        """Print and save the findings a finder (:mod:`offsetlab.lab.findings`) returned, in
        order; see :meth:`record`."""
        for f in [found] if isinstance(found, Finding) else found:
            if not isinstance(f, Finding) or not f.by:
                raise TypeError(f"not a finder's Finding: {f!r} (compute findings with a "
                                f"@finder function in lib/, see offsetlab.lab.findings)")
            self.record(f.name, f.value, rule=f.rule, measured=f.measured, by=f.by)

    def record(self, name: str, value: Any, *, rule: str | None = None,
               measured: Any = None, by: str | None = None) -> None:
        """Print and save one deterministic finding (bool, count, sorted list, class name).

        The printed line is ``name: value`` and nothing else (nbval compares it);
        ``findings.json`` holds ``{name: value}`` in the order the findings were made. For a
        threshold comparison, ``rule`` says what was compared (``"join_s >= 2 x 3 s"``) and
        ``measured`` holds the measured number(s) it was decided on (a number, a list, or a
        dict such as ``{"values": [...]}`` or ``{"retry topic": 0.9, "main topic": 0.4}``):
        both go to ``findings_detail.json`` (``{name: {"rule": ..., "measured": ...}}``) for
        the report, never to the notebook's output."""
        from .answers import jsonable

        self.findings[name] = value
        print(f"{name}: {value}")
        (self.out / "findings.json").write_text(json.dumps(jsonable(self.findings), indent=2) + "\n")
        details = self.finding_details
        if rule is None and measured is None and by is None and name not in details:
            return
        if rule is None and measured is None and by is None:
            del details[name]
        else:
            details[name] = {"rule": rule, "measured": jsonable(measured), "by": by}
        (self.out / "findings_detail.json").write_text(json.dumps(details, indent=2) + "\n")

    def answer(self, stem: str | None = None) -> None:
        """Answer the seed's question of this notebook (``stem``: another notebook's) from
        :attr:`findings` (:mod:`offsetlab.lab.answers`): print ``answer: <text>`` and save
        ``answer.json`` (``{"question", "answer", "rests_on": {name: value}}``) beside
        ``findings.json``. Returns None, so that the cell shows the printed line only."""
        from .answers import answer_for

        found = answer_for(stem or self.name, self.findings)
        print(f"answer: {found.answer}")
        (self.out / "answer.json").write_text(json.dumps(found.to_json(), indent=2) + "\n")

    def measure(self, name: str, value: Any) -> Any:
        """Save one measured number (times, ratios): shown only in cells nbval ignores."""
        self.measurements[name] = value
        self._save("measurements.json", self.measurements)
        return value

    def measure_repeats(self, name: str, values: Iterable[float]) -> dict[str, Any]:
        """Save a number measured ``repeats`` times as ``{"values", "median", "min", "max"}``
        (:func:`offsetlab.lab.findings.spread`); returns that dict."""
        return self.measure(name, spread(values))

    def save_frame(self, name: str, frame: Any) -> Path:
        path = self.out / f"{name}.csv"
        frame.to_csv(path, index=False)
        return path

    def save_figure(self, name: str, fig: Any) -> Path:
        path = self.out / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        return path

    def _save(self, filename: str, data: Mapping[str, Any]) -> None:
        (self.out / filename).write_text(json.dumps(data, indent=2, default=str, sort_keys=True) + "\n")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._stack.close()
