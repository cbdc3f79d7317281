"""offsetlab.lab.findings: finders stamp their findings, flips and spreads."""

from __future__ import annotations

import pytest
from offsetlab.lab.findings import FINDERS, Finding, assert_flips, finder, flips, spread


@pytest.fixture
def threshold():
    @finder("{} waited >= 1 s")
    def waited(label: str, seconds: float) -> Finding:
        return Finding(f"{label} waited >= 1 s", seconds >= 1, rule="waited_s >= 1",
                       measured=seconds)
    yield waited
    FINDERS.pop(waited.finder_id)


def test_a_finder_stamps_its_findings_and_registers(threshold) -> None:
    f = threshold("join", 1.5)
    assert f == Finding("join waited >= 1 s", True, "waited_s >= 1", 1.5, by=threshold.finder_id)
    assert FINDERS[threshold.finder_id].templates == ("{} waited >= 1 s",)


def test_a_finder_that_makes_a_name_outside_its_templates_raises() -> None:
    @finder("a name")
    def wrong() -> Finding:
        return Finding("another name", True)
    try:
        with pytest.raises(ValueError, match="matches none"):
            wrong()
    finally:
        FINDERS.pop(wrong.finder_id)


def test_assert_flips_passes_on_different_values_and_fails_on_equal(threshold) -> None:
    assert assert_flips(threshold("join", 0.2), threshold("join", 3.0)) == (False, True)
    with pytest.raises(AssertionError, match="both times"):
        assert_flips(threshold("join", 2.0), threshold("join", 3.0))


def test_flips_marks_a_test_and_refuses_a_plain_function(threshold) -> None:
    @flips(threshold)
    def test_x() -> None: ...
    assert test_x.__flips__ == (threshold.finder_id,)
    with pytest.raises(TypeError):
        flips(len)


def test_spread_is_values_median_min_max() -> None:
    assert spread([3.0, 1.0, 2.0, None]) == {"values": [3.0, 1.0, 2.0], "median": 2.0,
                                             "min": 1.0, "max": 3.0}
    assert spread([]) == {"values": [], "median": None, "min": None, "max": None}
