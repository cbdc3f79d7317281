"""Every test under tests/integration carries the ``integration`` marker, so ``-m`` selects it.

The marker comes from a hook in tests/integration/conftest.py (a ``pytestmark`` in a conftest
has no effect). Checked by collecting in a subprocess, as a user would, not by trusting the
hook's code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def collect(*args: str, cwd: Path = ROOT) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    """Test ids ``pytest --collect-only -q`` lists for ``args`` (run in ``cwd``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    return ids, proc


def test_marker_selects_every_integration_test() -> None:
    marked, proc = collect("-m", "integration", "tests/integration")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(marked) > 0, f"-m integration collected nothing:\n{proc.stdout}{proc.stderr}"
    assert all(i.startswith("tests/integration/") for i in marked), marked

    unmarked, proc = collect("-m", "not integration", "tests/integration")
    assert unmarked == [], f"tests under tests/integration without the marker: {unmarked}"
    assert proc.returncode == 5, proc.stdout + proc.stderr  # pytest: no tests collected


def test_the_conftest_hook_marks_a_test_that_does_not_mark_itself(tmp_path: Path) -> None:
    """The real integration modules also set ``pytestmark`` themselves, which would hide a
    broken hook; a probe module without any marker does not."""
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = --strict-markers\nmarkers =\n    integration: probe\n"
    )
    probe = tmp_path / "tests" / "integration"
    probe.mkdir(parents=True)
    shutil.copy(ROOT / "tests/integration/conftest.py", probe / "conftest.py")
    (probe / "test_probe.py").write_text("def test_unmarked():\n    pass\n")
    (tmp_path / "tests" / "unit").mkdir()
    (tmp_path / "tests" / "unit" / "test_probe_unit.py").write_text("def test_unit():\n    pass\n")

    # the probe is selected; a test outside tests/integration is not marked
    marked, proc = collect("-m", "integration", "tests", cwd=tmp_path)
    assert marked == ["tests/integration/test_probe.py::test_unmarked"], proc.stdout + proc.stderr
