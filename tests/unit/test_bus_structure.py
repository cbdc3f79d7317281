"""The adapter's shape: extractable, no import cycles, modules of one concept each.

- ``offsetlab.bus`` imports the standard library and itself; a client library only inside
  its transport's package (``transports/kafka_python``: kafka-python, ``transports/confluent``:
  confluent-kafka) or lazily, inside a function (``offsetlab.bus.testing``'s readers);
- importing the bus and using the in-memory bus loads no client library at all;
- no import cycle among the bus's modules (module-level imports; ``TYPE_CHECKING`` blocks
  and function-level imports don't count);
- no module of ``offsetlab.bus`` or ``offsetlab.lab`` is over 450 lines.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUS = ROOT / "lib/offsetlab/bus"
LAB = ROOT / "lib/offsetlab/lab"
STDLIB: frozenset[str] = frozenset(sys.stdlib_module_names)
CLIENT_OF_TRANSPORT = {"kafka_python": "kafka", "confluent": "confluent_kafka"}
CLIENTS = frozenset(CLIENT_OF_TRANSPORT.values())
MAX_LINES = 450


def _resolve(module: str | None, level: int, package: str, where: str) -> str:
    """The absolute name of ``from <level dots><module> import ...`` in ``package``."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    if level > len(parts):
        raise AssertionError(f"{where}: relative import beyond the top-level package")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, package: str, where: str):
    """``(lineno, module, names, top_level)`` of every import; top-level excludes function
    bodies and ``if TYPE_CHECKING:`` blocks."""
    out = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((child.lineno, a.name, (), top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                mod = _resolve(child.module, child.level, package, f"{where}:{child.lineno}")
                out.append((child.lineno, mod, tuple(a.name for a in child.names), top))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, False)
            else:
                visit(child, top)

    visit(tree, True)
    return out


def _modules(directory: Path, package: str):
    for path in sorted(directory.rglob("*.py")):
        rel = path.relative_to(directory).with_suffix("")
        inner = [p for p in rel.parts if p != "__init__"]
        name = ".".join([package, *inner])
        pkg = name if rel.name == "__init__" else ".".join([package, *inner[:-1]])
        yield path, rel, name, pkg


def bus_import_problems(directory: Path, package: str = "offsetlab.bus") -> list[str]:
    """Imports under ``directory`` (the package ``package``) that break the extractable rule."""
    problems = []
    for path, rel, _name, pkg in _modules(directory, package):
        where = str(path.relative_to(directory))
        transport = rel.parts[1] if rel.parts[0] == "transports" and len(rel.parts) > 2 else None
        own_client = CLIENT_OF_TRANSPORT.get(transport or "")
        for lineno, mod, _names, top in _imports(ast.parse(path.read_text(), where), pkg, where):
            first = mod.split(".")[0]
            if mod == package or mod.startswith(package + "."):
                continue
            if first in STDLIB and first != "offsetlab":
                continue
            if first == own_client or (first in CLIENTS and not top):
                continue
            problems.append(f"{where}:{lineno} imports {mod}")
    return problems


def bus_import_cycles(directory: Path = BUS, package: str = "offsetlab.bus") -> list[list[str]]:
    """Cycles among module-level imports inside ``package`` (the package itself, whose
    ``__init__`` re-exports, is not a node)."""
    names = {name for _p, _r, name, _k in _modules(directory, package)}
    graph: dict[str, set[str]] = {}
    for path, _rel, name, pkg in _modules(directory, package):
        edges = graph.setdefault(name, set())
        for _l, mod, imported, top in _imports(ast.parse(path.read_text()), pkg, name):
            if not top:
                continue
            targets = [f"{mod}.{n}" for n in imported if f"{mod}.{n}" in names] or [mod]
            edges.update(t for t in targets if t in names and t != package and t != name)
    cycles, state = [], {}

    def dfs(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                dfs(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            dfs(node, [node])
    return cycles


def test_bus_imports_only_the_standard_library_and_its_transports_clients():
    modules = sorted(str(p.relative_to(BUS)) for p in BUS.rglob("*.py"))
    assert len(modules) >= 20 and "transports/kafka_python/compat.py" in modules, modules
    assert bus_import_problems(BUS) == []


def test_the_bus_import_check_catches_what_it_should(tmp_path: Path) -> None:
    pkg = tmp_path / "bus"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "transports" / "kafka_python").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import x\nfrom . import a\n")
    (pkg / "a.py").write_text(
        "import json\nimport kafka.errors\nfrom confluent_kafka import Consumer\n"
        "from offsetlab.bus.errors import BusError\nfrom .sub.c import y\n"
        "def lazy():\n    import yaml\n    import kafka\n"
    )
    (pkg / "b.py").write_text(
        "from .. import lab\nfrom ..lab.paths import repo_root\nimport offsetlab\n"
        "from offsetlab.busy import z\nimport pandas as pd\n"
    )
    (pkg / "sub" / "__init__.py").write_text("from . import c\nfrom .. import a\n")
    (pkg / "sub" / "c.py").write_text("from ... import brokers\nfrom ..a import x\n")
    (pkg / "transports" / "__init__.py").write_text("")
    (pkg / "transports" / "kafka_python" / "__init__.py").write_text(
        "import kafka\nimport confluent_kafka\n")
    assert bus_import_problems(pkg, "offsetlab.bus") == [
        "a.py:2 imports kafka.errors",
        "a.py:3 imports confluent_kafka",
        "a.py:7 imports yaml",
        "b.py:1 imports offsetlab",
        "b.py:2 imports offsetlab.lab.paths",
        "b.py:3 imports offsetlab",
        "b.py:4 imports offsetlab.busy",
        "b.py:5 imports pandas",
        "sub/c.py:1 imports offsetlab",
        "transports/kafka_python/__init__.py:2 imports confluent_kafka",
    ]


def test_the_memory_bus_loads_no_client_library():
    code = (
        "import sys, dataclasses\n"
        "import offsetlab.bus as bus\n"
        "@dataclasses.dataclass(frozen=True, kw_only=True)\n"
        "class Ping(bus.Event):\n    topic = 'pings'\n    n: int = 0\n"
        "registry = bus.EventRegistry([Ping])\n"
        "seen = []\n"
        "with bus.InMemoryBus(registry) as b:\n"
        "    b.subscribe(Ping, lambda e: seen.append(e.n), group='g').run()\n"
        "    b.publish(Ping(n=1)); b.drain()\n"
        "assert seen == [1], seen\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('kafka', 'confluent_kafka'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_no_import_cycle_inside_the_bus():
    assert bus_import_cycles() == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "bus"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("from offsetlab.bus.b import y\nx = 1\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nfrom . import c\n"
                              "if TYPE_CHECKING:\n    from .a import x\ny = 2\n")
    (pkg / "c.py").write_text("def f():\n    from .a import x\n")
    assert bus_import_cycles(pkg) == []
    (pkg / "c.py").write_text("from .a import x\n")
    assert bus_import_cycles(pkg) == [["offsetlab.bus.a", "offsetlab.bus.b", "offsetlab.bus.c",
                                       "offsetlab.bus.a"]]


def test_no_bus_or_lab_module_is_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for d in (BUS, LAB) for p in sorted(d.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these into modules of one concept each: {long}"
