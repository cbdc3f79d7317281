"""offsetlab.lab: the research harness the notebooks stand on.

``notebook`` (NotebookSession: brokers, outputs, findings), ``paths``, ``raw`` (plain
kafka-python steps), ``timeline`` (the event recorder) and ``plots``, ``profiles``, ``suite``
(``offsetlab run``), ``report``, and ``experiments`` (one module per notebook).

Names are imported on first use, so ``import offsetlab.lab`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "NotebookSession": "notebook",
    "Timeline": "timeline",
    "recorded_send": "timeline",
    "RecordingProducer": "timeline",
    "record_consumed": "timeline",
    "TimelineRebalanceListener": "timeline",
    "runner_listener": "timeline",
    "deliveries": "timeline",
    "plot_timeline": "plots",
    "plot_bars": "plots",
    "run_suite": "suite",
    "SuiteConfig": "suite",
    "write_report": "report",
    "load_profile": "profiles",
    "validate_profile": "profiles",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
