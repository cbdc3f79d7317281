"""Findings as code: every finding a notebook prints is computed by a named *finder*.

A finder is a plain function in ``lib/`` (usually beside the experiment it judges) that takes
recorded data (a timeline, a summary row, offsets read back from the broker, a list of
repeated measurements) and returns one :class:`Finding` or a list of them::

    @finder("{}: rebalances during the outage >= 1")
    def rebalanced(strategy: str, summary: Mapping) -> Finding:
        n = summary["rebalances"]
        return Finding(f"{strategy}: rebalances during the outage >= 1", n >= 1,
                       rule="rebalances >= 1", measured=n)

The notebook calls the finder and hands the result to ``lab.finding(...)``
(:meth:`offsetlab.lab.notebook.NotebookSession.finding`); it does not restate the rule. The
decorator's names are the templates of the names the finder produces (``{}`` stands for a
parameter the notebook fills in: a strategy, a delay, a partition count). They tie a
printed finding back to its code:

- ``tests/unit/test_findings_coverage.py`` reads every findings cell of the committed
  notebooks and fails when a printed name matches no finder's template, or when a finder has
  no test marked with :func:`flips` for it;
- a test marked ``@flips(finder)`` runs the finder on hand-made data where the finding comes
  out one way and on data where it comes out the other way (:func:`assert_flips`), so that
  no finding is one that could only ever print what it prints.

Measured numbers a finding is decided on go in ``measured`` (the report shows them beside the
rule); numbers measured ``repeats`` times are summarised by :func:`spread`.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["FINDERS", "FLIPPED", "Finding", "Finder", "all_finders", "assert_flips", "finder", "finder_for_name",
           "finder_id", "flips", "median_of", "spread", "template_pattern"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Finding:
    """One deterministic finding: ``name: value`` is what the notebook prints (nbval compares
    it); ``rule`` says what was compared and ``measured`` the numbers it was decided on
    (``findings_detail.json``, never printed); ``by`` is the finder that made it (filled in
    by :func:`finder`)."""

    name: str
    value: Any
    rule: str | None = None
    measured: Any = None
    by: str = ""


@dataclass(frozen=True)
class Finder:
    id: str                       # "module.function"
    func: Callable[..., Any]
    templates: tuple[str, ...]    # the names it produces; "{}" stands for a parameter


#: every registered finder by id (filled as the modules that define them are imported)
FINDERS: dict[str, Finder] = {}


def finder_id(func: Callable[..., Any]) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def template_pattern(template: str) -> re.Pattern[str]:
    """``"delay {} ms: ..."`` as a regex that matches the whole name; ``{}`` matches any
    non-empty text."""
    return re.compile(".+?".join(re.escape(part) for part in template.split("{}")) + r"\Z")


def finder(*templates: str) -> Callable[[F], F]:
    """Register ``func`` as the finder of the findings named by ``templates``. Every
    :class:`Finding` it returns gets ``by`` set to its id, and a name that matches none of
    its templates raises ``ValueError`` (the template list is what the coverage test trusts)."""
    if not templates:
        raise ValueError("a finder names the findings it makes: @finder('name template', ...)")
    patterns = [template_pattern(t) for t in templates]

    def register(func: F) -> F:
        fid = finder_id(func)

        def stamp(f: Any) -> Finding:
            if not isinstance(f, Finding):
                raise TypeError(f"{fid} returned {type(f).__name__}, not a Finding")
            if not any(p.match(f.name) for p in patterns):
                raise ValueError(f"{fid} made {f.name!r}, which matches none of {templates}")
            return Finding(f.name, f.value, f.rule, f.measured, by=fid)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            out = func(*args, **kwargs)
            if isinstance(out, Finding):
                return stamp(out)
            return [stamp(f) for f in out]

        wrapped.__name__ = func.__name__
        wrapped.__qualname__ = func.__qualname__
        wrapped.__module__ = func.__module__
        wrapped.__doc__ = func.__doc__
        wrapped.__wrapped__ = func  # type: ignore[attr-defined]
        wrapped.finder_id = fid  # type: ignore[attr-defined]
        FINDERS[fid] = Finder(fid, wrapped, tuple(templates))
        return wrapped  # type: ignore[return-value]

    return register


def all_finders() -> list[Finder]:
    """Every finder of the lab: imports each module of :mod:`offsetlab.lab` and its
    experiments first (finders register when their module is imported)."""
    import importlib
    import pkgutil

    import offsetlab.lab as lab_pkg

    for info in pkgutil.walk_packages(lab_pkg.__path__, "offsetlab.lab."):
        importlib.import_module(info.name)
    return sorted(FINDERS.values(), key=lambda f: f.id)


def finder_for_name(name: str, finders: Iterable[Finder] | None = None) -> list[Finder]:
    """The finders whose templates match a printed finding name."""
    return [f for f in (FINDERS.values() if finders is None else finders)
            if any(template_pattern(t).match(name) for t in f.templates)]


# -- tests' side ----------------------------------------------------------------------------
def flips(*finders: Callable[..., Any]) -> Callable[[F], F]:
    """Mark a test as the one that shows each of ``finders`` coming out both ways. The
    coverage test collects these marks; the test body shows it (:func:`assert_flips`)."""
    ids = []
    for f in finders:
        fid = getattr(f, "finder_id", None)
        if fid is None:
            raise TypeError(f"{f!r} is not a registered finder")
        ids.append(fid)

    def mark(test: F) -> F:
        test.__flips__ = tuple(ids) + tuple(getattr(test, "__flips__", ()))  # type: ignore[attr-defined]
        return test

    return mark


def assert_flips(one: Finding | Sequence[Finding], other: Finding | Sequence[Finding],
                 name: str | None = None) -> tuple[Any, Any]:
    """Assert that the finding ``name`` (the only one when None) has different values in two
    runs of its finder; returns the two values so the test can also assert which is which."""
    def pick(fs: Finding | Sequence[Finding]) -> Finding:
        if isinstance(fs, Finding):
            return fs
        hits = [f for f in fs if name is None or f.name == name]
        if len(hits) != 1:
            raise AssertionError(f"{len(hits)} findings named {name!r} in {[f.name for f in fs]}")
        return hits[0]

    a, b = pick(one), pick(other)
    assert a.name == b.name, f"different findings: {a.name!r} vs {b.name!r}"
    assert a.value != b.value, f"{a.name!r} came out {a.value!r} both times"
    FLIPPED.add(a.name)
    return a.value, b.value


#: the names :func:`assert_flips` has seen come out both ways in this process (the coverage
#: test runs the flip tests and checks every template of every finder against these)
FLIPPED: set[str] = set()


# -- repeats --------------------------------------------------------------------------------
def spread(values: Iterable[float]) -> dict[str, Any]:
    """A measurement repeated ``repeats`` times, as saved in ``measurements.json``:
    ``{"values": [...], "median": m, "min": a, "max": b}`` (values in measured order)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"values": [], "median": None, "min": None, "max": None}
    return {"values": list(vals), "median": statistics.median(vals), "min": min(vals),
            "max": max(vals)}


def median_of(measure: Mapping[str, Any] | Sequence[float]) -> float | None:
    """The median of a :func:`spread` dict or of a list of values (None when empty)."""
    if isinstance(measure, Mapping):
        return measure.get("median")
    vals = [v for v in measure if v is not None]
    return statistics.median(vals) if vals else None
