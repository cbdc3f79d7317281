"""The committed notebooks keep the notebook contract where a reader sees it (README)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(path: Path, tag: str) -> list[dict]:
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if tag in c.get("metadata", {}).get("tags", [])]


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 9, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_main_plot_cell_shows_a_picture(path: Path):
    """What JupyterLab and the report show: a PNG, not ``<Figure size ...>`` text."""
    cells = _cells(path, "main-plot")
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged main-plot"
    outputs = cells[0].get("outputs", [])
    assert any("image/png" in o.get("data", {}) for o in outputs), (
        f"{path.name}: the main-plot cell has no image/png output: "
        f"{[list(o.get('data', {})) or o.get('output_type') for o in outputs]}")


ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?!tmp/)[\w.-]+/[\w./-]+")


def _texts(outputs: list[dict]) -> str:
    """The text nbval compares: streams and text/plain (images are not compared)."""
    parts = []
    for o in outputs:
        parts.append("".join(o.get("text", [])))
        parts.append("".join(o.get("data", {}).get("text/plain", [])))
    return "\n".join(parts)


def checkout_paths(nb: dict) -> list[int]:
    """Code cells nbval compares whose outputs hold an absolute path outside /tmp."""
    return [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
            and "nbval-ignore-output" not in c.get("metadata", {}).get("tags", [])
            and ABSOLUTE_PATH.search(_texts(c.get("outputs", [])))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_compared_outputs_name_no_checkout_path(path: Path) -> None:
    """nbval compares these outputs on a fresh clone elsewhere: a path of the checkout in them
    (a returned ``PosixPath``) differs there (the sanitizer maps only /tmp paths)."""
    assert not checkout_paths(json.loads(path.read_text())), path.name


def test_the_path_check_catches_a_returned_path() -> None:
    cell = {"cell_type": "code", "metadata": {}, "outputs": [{"data": {"text/plain": [
        "PosixPath('/work/main/data/scratch/04_manual_commit_loss/max_poll.csv')"]}}]}
    ok = {"cell_type": "code", "metadata": {}, "outputs": [{"text": [
        "start/run: returns dict | kafka-python / notes: TMPPATH /tmp/x/y"]}]}
    assert checkout_paths({"cells": [ok, cell]}) == [1]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_findings_cells_are_compared_by_nbval(path: Path) -> None:
    """A findings cell tagged nbval-ignore-output would hide a finding that changed."""
    cells = _cells(path, "findings")
    assert cells, f"{path.name} has no findings cell"
    hidden = [c for c in cells if "nbval-ignore-output" in c["metadata"].get("tags", [])]
    assert not hidden, f"{path.name}: findings cells tagged nbval-ignore-output"


def stderr_cells(nb: dict) -> list[int]:
    """Code cells nbval compares that hold a stderr stream (a library's log line, a thread's
    traceback): nbval fails the next run that does not print the same."""
    return [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
            and "nbval-ignore-output" not in c.get("metadata", {}).get("tags", [])
            and any(o.get("output_type") == "stream" and o.get("name") == "stderr"
                    for o in c.get("outputs", []))]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_compared_outputs_hold_no_stderr(path: Path) -> None:
    """A committed E01 once held librdkafka's '%6|...|BGQUEUE|...' line from an admin client
    without a logger; the next nbval run failed on it."""
    assert not stderr_cells(json.loads(path.read_text())), path.name


def test_the_stderr_check_catches_a_log_line() -> None:
    out = {"cell_type": "code", "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stderr", "text": ["%6|1|BGQUEUE|rdkafka#producer-1|"]}]}
    ok = {"cell_type": "code", "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stdout", "text": ["answer: yes"]}]}
    assert stderr_cells({"cells": [ok, out]}) == [1]
