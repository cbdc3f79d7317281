"""RunnerConfig and CrashPolicy validation (no broker)."""

from __future__ import annotations

import pytest
from offsetlab.bus.config import CrashPolicy, RunnerConfig
from offsetlab.bus.errors import ConfigError


def cfg(**kw: object) -> RunnerConfig:
    base: dict[str, object] = dict(bootstrap_servers="127.0.0.1:9092", group_id="g", topics=("t",))
    base.update(kw)
    return RunnerConfig(**base)  # type: ignore[arg-type]


def test_defaults_and_kafka_kwargs() -> None:
    c = cfg(consumer_settings={"auto_offset_reset": "earliest", "session_timeout_ms": 10000})
    assert c.name == "offsetlab-g"
    kw = c.kafka_kwargs()
    assert kw["enable_auto_commit"] is False
    assert kw["client_id"] == "offsetlab-g" and kw["group_id"] == "g"
    assert kw["auto_offset_reset"] == "earliest" and kw["session_timeout_ms"] == 10000


def test_config_is_frozen_and_keyword_only() -> None:
    c = cfg()
    with pytest.raises(AttributeError):
        c.group_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        RunnerConfig("127.0.0.1:9092", "g", ("t",))  # type: ignore[misc]


def test_settings_are_copied_not_aliased() -> None:
    settings = {"auto_offset_reset": "earliest"}
    c = cfg(consumer_settings=settings)
    settings["auto_offset_reset"] = "latest"
    assert c.consumer_settings["auto_offset_reset"] == "earliest"


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"consumer_settings": {"auto_ofset_reset": "earliest"}}, "auto_ofset_reset"),
        ({"consumer_settings": {"enable_auto_commit": True}}, "enable_auto_commit"),
        ({"consumer_settings": {"group_id": "x"}}, "group_id"),
        ({"consumer_settings": {"consumer_timeout_ms": 5}}, "consumer_timeout_ms"),
        ({"topics": "t"}, "topics"),
        ({"topics": ()}, "topics"),
        ({"group_id": ""}, "group_id"),
        ({"bootstrap_servers": ""}, "bootstrap_servers"),
        ({"poll_timeout_ms": 0}, "poll_timeout_ms"),
        ({"crash_policy": "restart"}, "crash_policy"),
    ],
)
def test_bad_values_name_the_key(kw: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        cfg(**kw)


def test_enable_auto_commit_false_is_accepted() -> None:
    assert cfg(consumer_settings={"enable_auto_commit": False}).kafka_kwargs()[
        "enable_auto_commit"] is False


def test_crash_policy_decisions() -> None:
    default = CrashPolicy()
    assert default.decide(RuntimeError("x"), 0) is True  # KafkaJS restarts by default
    assert CrashPolicy(restart=False).decide(RuntimeError("x"), 0) is False
    limited = CrashPolicy(max_restarts=2)
    assert [limited.decide(RuntimeError(), n) for n in range(4)] == [True, True, False, False]
    fatal = CrashPolicy(fatal=(TypeError,))
    assert fatal.decide(TypeError("bug"), 0) is False
    assert fatal.decide(ValueError("data"), 0) is True


def test_crash_policy_backoff_doubles_up_to_the_cap() -> None:
    p = CrashPolicy(backoff_s=0.5, max_backoff_s=3.0)
    assert [p.backoff_for(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    "kw",
    [{"max_restarts": -1}, {"backoff_s": -1}, {"backoff_s": 5, "max_backoff_s": 1},
     {"fatal": ("TypeError",)}, {"restart": "yes"}],
)
def test_bad_crash_policy(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="CrashPolicy"):
        CrashPolicy(**kw)  # type: ignore[arg-type]
