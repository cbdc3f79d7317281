"""Named parameter sets for the notebooks: ``data/profiles/<name>.yaml``.

A profile maps a notebook's file stem to papermill parameters for it::

    # data/profiles/seed.yaml: the seed's own timings
    01_run_blocking:
      producer_gap_s: 3.0
      handler_delay_s: 1.0

A notebook the profile does not name runs with the defaults of its ``parameters`` cell (which
are the fast profile, so ``fast.yaml`` is an empty mapping). :func:`validate_profile` holds a
profile to the notebooks: every notebook it names exists, every key is assigned in that
notebook's ``parameters`` cell, no key is one the suite runner sets itself
(:data:`RUNNER_PARAMETERS`), and a value has the type of the notebook's literal default
(an int may stand for a float; ``None`` defaults accept anything).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import notebooks_dir, profiles_dir

__all__ = [
    "ProfileError",
    "Unparsed",
    "RUNNER_PARAMETERS",
    "load_profile",
    "profile_names",
    "notebook_parameters",
    "discover_notebooks",
    "validate_profile",
    "check_profile",
]

#: parameters the suite runner passes to every notebook; a profile must not set them
RUNNER_PARAMETERS = frozenset({"bootstrap_servers", "broker_kind", "run_id"})


class ProfileError(ValueError):
    """A profile file or a notebook's parameters cell is not what the runner needs."""


@dataclass(frozen=True)
class Unparsed:
    """A parameter whose default is an expression, not a literal (kept as its source)."""

    source: str


def profile_names(directory: Path | None = None) -> list[str]:
    """The profiles there are (file stems of ``*.yaml``), sorted."""
    directory = profiles_dir() if directory is None else directory
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_profile(name: str, directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """Read ``<directory>/<name>.yaml`` (default ``data/profiles``): notebook stem ->
    {parameter: value}. An empty file is an empty profile."""
    import yaml

    directory = profiles_dir() if directory is None else directory
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(profile_names(directory)) or "none"
        raise ProfileError(f"no profile {name!r}: {path} does not exist (profiles: {known})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProfileError(f"{path} must map notebook names to parameter mappings, "
                           f"not be a {type(data).__name__}")
    profile: dict[str, dict[str, Any]] = {}
    for notebook, params in data.items():
        if params is None:
            params = {}
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            raise ProfileError(f"{path}: {notebook!r} must map parameter names to values, "
                               f"got {params!r}")
        profile[str(notebook)] = dict(params)
    return profile


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The names assigned in the notebook's cell tagged ``parameters`` and their defaults
    (literals evaluated; other expressions as :class:`Unparsed`). No such cell -> ``{}``."""
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    params: dict[str, Any] = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError as exc:
            raise ProfileError(f"{path}: the parameters cell is not valid Python: {exc}") from exc
        for node in tree.body:
            targets: list[ast.expr]
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets, value = [node.target], node.value
            else:
                continue
            for target in targets:
                names = [target] if isinstance(target, ast.Name) else \
                    [e for e in getattr(target, "elts", []) if isinstance(e, ast.Name)]
                for name in names:
                    params[name.id] = _default(value) if len(names) == 1 else Unparsed(ast.unparse(value))
        break  # papermill uses the first tagged cell
    return params


def _default(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return Unparsed(ast.unparse(node))


def discover_notebooks(directory: Path | None = None) -> dict[str, Path]:
    """Notebook stem -> path for ``*.ipynb`` in ``directory`` (default ``notebooks/``), sorted;
    checkpoints and papermill outputs elsewhere are not included."""
    directory = notebooks_dir() if directory is None else directory
    return {p.stem: p for p in sorted(directory.glob("*.ipynb"))}


def _type_problem(value: Any, default: Any) -> str | None:
    if default is None or isinstance(default, Unparsed):
        return None
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(default, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float)
    elif isinstance(default, list | tuple):
        ok = isinstance(value, list | tuple)
    else:
        ok = isinstance(value, type(default))
    if ok:
        return None
    return (f"is {value!r} ({type(value).__name__}) but the notebook's default is "
            f"{default!r} ({type(default).__name__})")


def validate_profile(profile: Mapping[str, Mapping[str, Any]],
                     notebooks: Mapping[str, Path] | Iterable[Path] | None = None,
                     *, name: str = "profile") -> list[str]:
    """Problems of ``profile`` against the notebooks (stem -> path, or paths; default: every
    notebook in ``notebooks/``); an empty list means it is fine."""
    if notebooks is None:
        notebooks = discover_notebooks()
    elif not isinstance(notebooks, Mapping):
        notebooks = {Path(p).stem: Path(p) for p in notebooks}
    problems: list[str] = []
    for stem, params in profile.items():
        if stem not in notebooks:
            problems.append(f"{name}: notebook {stem!r} does not exist (notebooks: "
                            f"{', '.join(sorted(notebooks)) or 'none'})")
            continue
        declared = notebook_parameters(notebooks[stem])
        for key, value in params.items():
            if key in RUNNER_PARAMETERS:
                problems.append(f"{name}: {stem}.{key} is set by the suite runner; remove it "
                                "from the profile (use --broker / --bootstrap-servers)")
            elif key not in declared:
                problems.append(f"{name}: {stem}.{key} is not a parameter of {stem} "
                                f"(its parameters: {', '.join(sorted(declared)) or 'none'})")
            elif (why := _type_problem(value, declared[key])) is not None:
                problems.append(f"{name}: {stem}.{key} {why}")
    return problems


def check_profile(profile: Mapping[str, Mapping[str, Any]],
                  notebooks: Mapping[str, Path] | Iterable[Path] | None = None,
                  *, name: str = "profile") -> None:
    """:func:`validate_profile`, raising :class:`ProfileError` listing every problem."""
    problems = validate_profile(profile, notebooks, name=name)
    if problems:
        raise ProfileError("; ".join(problems))
