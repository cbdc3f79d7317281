"""``offsetlab bench`` smoke test on the session's Kafka: tiny N, every line there, no speeds.

A benchmark's numbers are not a test's business (the machine is shared); this checks that a
run measures every side, prints each ratio as a positive number and saves ``bench.json``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from offsetlab.brokers import BrokerHandle
from offsetlab.cli import main as cli_main

pytestmark = pytest.mark.integration


@pytest.mark.timeout(120)
def test_bench_prints_positive_ratios_and_saves_results(
    kafka_broker: BrokerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OFFSETLAB_RUNS_DIR", str(tmp_path))
    code = cli_main(["bench", "--broker", "external", "--bootstrap-servers",
                     kafka_broker.bootstrap_servers, "--messages", "300", "--repeat", "1",
                     "--partitions", "2", "--timeout", "60", "--run-id", "bench-smoke"])
    text = capsys.readouterr().out
    print(text)
    assert code == 0, text

    ratio_lines = [line for line in text.splitlines() if "ratio" in line]
    ratios = {}
    for line in ratio_lines:
        m = re.search(r"^(\w+ (?:cpu )?ratio [\w/+]+): ([0-9.eE+-]+)", line)
        assert m, f"no number on ratio line {line!r}"
        ratios[m.group(1)] = float(m.group(2))
    assert set(ratios) == {"produce ratio bus/raw", "consume ratio bus/raw",
                           "produce ratio bus/raw+json", "consume ratio bus/raw+json",
                           "produce cpu ratio raw/bus", "consume cpu ratio raw/bus"}
    assert all(math.isfinite(v) and v > 0 for v in ratios.values()), ratios

    saved = json.loads((tmp_path / "bench-smoke" / "bench.json").read_text())
    sides = {(m["op"], m["side"]) for m in saved["measurements"]}
    assert sides == {(op, side) for op in ("produce", "consume")
                     for side in ("raw", "raw+json", "bus")}
    assert all(m["messages"] == 300 and m["seconds"] > 0 for m in saved["measurements"])
    # what was printed is what was saved (3 significant digits)
    for key, value in saved["ratios"].items():
        op, _, what = key.partition(" ")
        printed = (f"{op} cpu ratio {what.removeprefix('cpu ')}" if what.startswith("cpu ")
                   else f"{op} ratio {what}")
        assert ratios[printed] == pytest.approx(value, rel=5e-3)
    assert saved["broker"]["bootstrap_servers"] == kafka_broker.bootstrap_servers
