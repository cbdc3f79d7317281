"""Every finding a committed notebook prints is made by a finder, and every finder has a
test where it comes out the other way (``offsetlab.lab.findings``).

The flip tests live in ``tests/unit/test_findings_*.py``, marked ``@flips(finder, ...)``."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
from offsetlab.lab.findings import FLIPPED, Finder, all_finders, template_pattern

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FLIP_MODULES = sorted(Path(__file__).parent.glob("test_findings_*.py"))


def printed_findings(path: Path) -> list[str]:
    """The ``name: value`` lines the findings cells of a committed notebook printed (the
    ``answer:`` line is the seed's answer, not a finding)."""
    nb = json.loads(path.read_text())
    lines = []
    for cell in nb["cells"]:
        if "findings" not in cell.get("metadata", {}).get("tags", []):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text = "".join(out["text"])
                lines += [ln for ln in text.splitlines() if ln and not ln.startswith("answer: ")]
    return lines


def line_pattern(template: str) -> re.Pattern[str]:
    """A printed line ``<name>: <value>`` whose name fits ``template`` (the finder's own
    :func:`template_pattern`, followed by ``: <value>``)."""
    return re.compile(template_pattern(template).pattern.removesuffix(r"\Z") + r": .*\Z")


def finders_of_line(line: str, finders: list[Finder]) -> list[Finder]:
    return [f for f in finders if any(line_pattern(t).match(line) for t in f.templates)]


def flipped_ids() -> dict[str, list[str]]:
    """finder id -> the tests marked as flipping it, from ``test_findings_*.py``."""
    covered: dict[str, list[str]] = {}
    for path in FLIP_MODULES:
        spec = importlib.util.spec_from_file_location(f"_flips_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, obj in vars(module).items():
            for fid in getattr(obj, "__flips__", ()):
                covered.setdefault(fid, []).append(f"{path.name}::{name}")
    return covered


def test_there_are_findings_to_check() -> None:
    assert sum(len(printed_findings(p)) for p in NOTEBOOKS) >= 100
    assert FLIP_MODULES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_printed_finding_is_made_by_a_finder(path: Path) -> None:
    finders = all_finders()
    orphans = [ln for ln in printed_findings(path) if not finders_of_line(ln, finders)]
    assert not orphans, f"{path.name}: printed findings no finder makes: {orphans}"


def test_every_finder_has_a_test_where_it_comes_out_the_other_way() -> None:
    covered = flipped_ids()
    missing = [f.id for f in all_finders() if f.id not in covered]
    assert not missing, f"finders with no @flips test in tests/unit/test_findings_*.py: {missing}"


def test_every_finder_is_seen_coming_out_both_ways_by_its_tests() -> None:
    """The ``@flips`` mark is backed by the test body: run every marked test and check that
    each finder made at least one name :func:`assert_flips` saw with two values (a finder's
    templates are one piece of code under several labels: strategy, scenario, case)."""
    FLIPPED.clear()
    for path in FLIP_MODULES:
        spec = importlib.util.spec_from_file_location(f"_run_{path.stem}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses defined in a test look their module up
        spec.loader.exec_module(module)
        for obj in list(vars(module).values()):
            if getattr(obj, "__flips__", None):
                obj()
    unflipped = [f.id for f in all_finders()
                 if not any(template_pattern(t).match(name) for t in f.templates for name in FLIPPED)]
    assert not unflipped, f"finders no flip test showed coming out both ways: {unflipped}"


def test_every_finder_is_used_by_a_committed_notebook() -> None:
    """A finder no notebook prints is dead code (or a notebook not re-run)."""
    lines = [ln for p in NOTEBOOKS for ln in printed_findings(p)]
    unused = [f.id for f in all_finders()
              if not any(line_pattern(t).match(ln) for t in f.templates for ln in lines)]
    assert not unused, f"finders whose findings no committed notebook prints: {unused}"


def test_the_coverage_check_catches_an_orphan_and_an_unflipped_finder() -> None:
    """The checks above can fail: a line no template fits, and a finder nobody flips."""
    from offsetlab.lab.findings import finder

    @finder("made up {}: count")
    def made_up(x: int):  # pragma: no cover - only its registration matters
        raise AssertionError

    finders = all_finders()
    try:
        assert finders_of_line("made up thing: count: 3", finders)
        assert not finders_of_line("nobody makes this: True", finders)
        assert made_up.finder_id not in flipped_ids()
    finally:
        from offsetlab.lab.findings import FINDERS
        FINDERS.pop(made_up.finder_id)
