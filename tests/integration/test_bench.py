"""``offsetlab bench`` smoke test on the session's Kafka: tiny N, every line there, no speeds.

A benchmark's numbers are not a test's business (the machine is shared); this checks that a
run measures every side on both clients, prints each ratio, bus cost and the envelope's
parts as numbers, and saves what it printed to ``bench.json``.
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

CLIENTS = ("kafka-python", "confluent-kafka")
NUMBER = r"(-?[0-9][0-9.eE+-]*)"


def _number(text: str, pattern: str) -> float:
    m = re.search(pattern, text, re.MULTILINE)
    assert m, f"no line matching {pattern!r} in:\n{text}"
    value = float(m.group(1))
    assert math.isfinite(value), m.group(0)
    return value


@pytest.mark.timeout(240)
def test_bench_on_both_clients_prints_every_line_and_saves_results(
    kafka_broker: BrokerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OFFSETLAB_RUNS_DIR", str(tmp_path))
    code = cli_main(["bench", "--client", "all", "--broker", "external", "--bootstrap-servers",
                     kafka_broker.bootstrap_servers, "--messages", "300",
                     "--confluent-messages", "600", "--repeat", "1", "--partitions", "2",
                     "--timeout", "60", "--run-id", "bench-smoke"])
    text = capsys.readouterr().out
    print(text)
    assert code == 0, text
    saved = json.loads((tmp_path / "bench-smoke" / "bench.json").read_text())

    for part in ("uuid4", "timestamp", "json", "headers"):
        value = _number(text, rf"^envelope parts \(us/event\):.* {part} {NUMBER}")
        assert value > 0 and value == pytest.approx(saved["envelope"][part], abs=0.006)
    for client in CLIENTS:
        for op in ("publish", "consume"):
            for base in ("raw", "raw+json"):
                ratio = _number(text, rf"^{client} {op} ratio bus/{re.escape(base)}: {NUMBER}")
                assert ratio > 0
                assert ratio == pytest.approx(saved["ratios"][f"{client} {op} bus/{base}"],
                                              rel=5e-3)
            cpu = _number(text, rf"^{client} {op} ratio bus/raw: .*CPU per message raw/bus "
                                rf"{NUMBER}")
            assert cpu > 0
            assert cpu == pytest.approx(saved["cpu_ratios"][f"{client} {op} raw/bus"], rel=5e-3)
        line = rf"^{client} bus cost per message: publish {NUMBER} us, consume {NUMBER} us"
        m = re.search(line, text, re.MULTILINE)
        assert m, f"no bus cost line for {client}"
        for op, printed in zip(("publish", "consume"), m.groups(), strict=True):
            assert float(printed) == pytest.approx(saved["bus_cost_us"][f"{client} {op}"],
                                                   abs=0.06)
    for op in ("publish", "consume"):
        cross = _number(text, rf"^bus confluent-kafka/kafka-python {op}: {NUMBER}")
        assert cross > 0
        assert cross == pytest.approx(saved["ratios"][f"bus confluent-kafka/kafka-python {op}"],
                                      rel=5e-3)

    rows = saved["measurements"]
    assert {(m["client"], m["op"], m["side"]) for m in rows} == {
        (c, op, side) for c in CLIENTS for op in ("publish", "consume")
        for side in ("raw", "raw+json", "bus")}
    assert all(m["seconds"] > 0 and m["cpu_s"] >= 0 for m in rows)
    assert {m["messages"] for m in rows if m["client"] == "kafka-python"} == {300}
    assert {m["messages"] for m in rows if m["client"] == "confluent-kafka"} == {600}
    assert saved["broker"]["bootstrap_servers"] == kafka_broker.bootstrap_servers
    assert saved["json"] and "confluent-kafka" in saved["versions"]


def test_bench_refuses_an_unknown_client(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["bench", "--client", "librdkafka"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
