"""Where things live, resolved from the package (never from the working directory:
nbval and papermill run notebooks with the notebook's folder as cwd)."""

from __future__ import annotations

import os
import re
from pathlib import Path


def repo_root() -> Path:
    """The checkout's root (``lib/offsetlab/lab/paths.py`` -> three levels up);
    ``$OFFSETLAB_ROOT`` overrides it for an installed (non-editable) package."""
    if os.environ.get("OFFSETLAB_ROOT"):
        return Path(os.environ["OFFSETLAB_ROOT"]).resolve()
    return Path(__file__).resolve().parents[3]


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def data_dir() -> Path:
    return repo_root() / "data"


def profiles_dir() -> Path:
    return data_dir() / "profiles"


def runs_dir() -> Path:
    """``data/runs``, or ``$OFFSETLAB_RUNS_DIR`` (the suite runner sets it for its kernels)."""
    if os.environ.get("OFFSETLAB_RUNS_DIR"):
        return Path(os.environ["OFFSETLAB_RUNS_DIR"]).resolve()
    return data_dir() / "runs"


def scratch_dir() -> Path:
    """Git-ignored outputs of notebooks run outside the suite runner (JupyterLab, nbval)."""
    return data_dir() / "scratch"


_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def output_dir(notebook: str, run_id: str | None = None) -> Path:
    """``data/runs/<run_id>/<notebook>/`` when the suite runner passes a run id, else
    ``data/scratch/<notebook>/``; created on demand."""
    if run_id:
        if not _RUN_ID.match(run_id):
            raise ValueError(f"run_id {run_id!r} must be letters, digits, '.', '_' or '-'")
        path = runs_dir() / run_id / notebook
    else:
        path = scratch_dir() / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path
