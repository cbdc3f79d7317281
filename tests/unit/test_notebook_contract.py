"""The committed notebooks keep the notebook contract where a reader sees it (README)."""

from __future__ import annotations

import json
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
