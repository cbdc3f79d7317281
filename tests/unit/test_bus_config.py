"""KafkaBusConfig validates every key when it is built (no broker needed): a bad value raises
ConfigError naming the key; a good config is normalised (tuples, read-only mappings)."""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType
from typing import Any

import pytest
from offsetlab.bus import ConfigError, CrashPolicy, KafkaBusConfig, RunnerConfig

SERVERS = "localhost:9092"

# (overrides, regex the ConfigError must match: the key it names)
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "servers-empty": ({"bootstrap_servers": ""}, r"KafkaBusConfig\.bootstrap_servers"),
    "servers-blank": ({"bootstrap_servers": "  "}, r"KafkaBusConfig\.bootstrap_servers"),
    "servers-no-tuple": ({"bootstrap_servers": ()}, r"KafkaBusConfig\.bootstrap_servers"),
    "servers-not-str": ({"bootstrap_servers": (9092,)}, r"KafkaBusConfig\.bootstrap_servers"),
    "client-not-mapping": ({"client_settings": [("acks", 1)]}, r"KafkaBusConfig\.client_settings"),
    "client-unknown": ({"client_settings": {"sasl_mechanizm": "PLAIN"}},
                       r"KafkaBusConfig\.client_settings\['sasl_mechanizm'\] is not"),
    "client-owned-servers": ({"client_settings": {"bootstrap_servers": SERVERS}},
                             r"KafkaBusConfig\.client_settings\['bootstrap_servers'\] is set by"),
    "client-owned-client-id": ({"client_settings": {"client_id": "x"}},
                               r"KafkaBusConfig\.client_settings\['client_id'\] is set by"),
    "client-owned-group": ({"client_settings": {"group_id": "g"}},
                           r"KafkaBusConfig\.client_settings\['group_id'\] is set by"),
    "publish-not-mapping": ({"publish_producer": "acks=all"}, r"KafkaBusConfig\.publish_producer"),
    "publish-unknown": ({"publish_producer": {"group_id": "g"}},
                        r"KafkaBusConfig\.publish_producer\['group_id'\] is not a KafkaProducer"),
    "publish-owned": ({"publish_producer": {"value_serializer": str.encode}},
                      r"KafkaBusConfig\.publish_producer\['value_serializer'\] is set by"),
    "publish-delivery": ({"publish_producer": {"delivery_timeout_ms": 1000,
                                               "request_timeout_ms": 5000}},
                         r"KafkaBusConfig\.publish_producer: delivery_timeout_ms"),
    "reproduce-not-mapping": ({"reproduce_producer": None},
                              r"KafkaBusConfig\.reproduce_producer"),
    "reproduce-unknown": ({"reproduce_producer": {"acks_": 1}},
                          r"KafkaBusConfig\.reproduce_producer\['acks_'\] is not"),
    "reproduce-owned": ({"reproduce_producer": {"client_id": "x"}},
                        r"KafkaBusConfig\.reproduce_producer\['client_id'\] is set by"),
    "reproduce-delivery": ({"reproduce_producer": {"delivery_timeout_ms": 100, "linger_ms": 50,
                                                   "request_timeout_ms": 100}},
                           r"KafkaBusConfig\.reproduce_producer: delivery_timeout_ms"),
    "consumer-not-mapping": ({"consumer_settings": 5}, r"KafkaBusConfig\.consumer_settings"),
    "consumer-unknown": ({"consumer_settings": {"session_timeout": 10}},
                         r"consumer_settings\['session_timeout'\] is not a kafka-python"),
    "consumer-auto-commit": ({"consumer_settings": {"enable_auto_commit": True}},
                             r"consumer_settings\['enable_auto_commit'\] must be False"),
    "consumer-owned": ({"consumer_settings": {"group_id": "g"}},
                       r"consumer_settings\['group_id'\] is set by the runner"),
    "poll-zero": ({"poll_timeout_ms": 0}, r"RunnerConfig\.poll_timeout_ms must be"),
    "poll-float": ({"poll_timeout_ms": 1.5}, r"RunnerConfig\.poll_timeout_ms must be"),
    "crash-policy": ({"crash_policy": "restart"}, r"RunnerConfig\.crash_policy must be"),
    "partitions-zero": ({"default_partitions": 0}, r"KafkaBusConfig\.default_partitions=0"),
    "partitions-bool": ({"default_partitions": True}, r"KafkaBusConfig\.default_partitions=True"),
    "partitions-float": ({"default_partitions": 2.0}, r"KafkaBusConfig\.default_partitions=2\.0"),
    "name-empty": ({"name": ""}, r"KafkaBusConfig\.name must be"),
    "name-not-str": ({"name": 7}, r"KafkaBusConfig\.name must be"),
    "client-unknown-library": ({"client": "kafkajs"}, r"KafkaBusConfig\.client='kafkajs'"),
    "client-none": ({"client": None}, r"KafkaBusConfig\.client=None"),
    "factory-not-callable": ({"consumer_factory": "KafkaConsumer"},
                             r"KafkaBusConfig\.consumer_factory must be callable"),
    "txn-empty": ({"transactional_id": ""}, r"KafkaBusConfig\.transactional_id must be"),
    "txn-not-str": ({"transactional_id": 3}, r"KafkaBusConfig\.transactional_id must be"),
    "txn-confluent": ({"transactional_id": "w1", "client": "confluent-kafka"},
                      r"KafkaBusConfig\.transactional_id: the transactional mode runs on "
                      r"kafka-python only"),
    "txn-uncommitted": ({"transactional_id": "w1",
                         "consumer_settings": {"isolation_level": "read_uncommitted"}},
                        r"consumer_settings\['isolation_level'\] must be 'read_committed'"),
}
for _key in ("publish_timeout_s", "reproduce_timeout_s", "join_timeout_s", "admin_timeout_s"):
    for _label, _value in (("zero", 0), ("negative", -1.0), ("nan", math.nan), ("inf", math.inf),
                           ("bool", True), ("str", "5")):
        BAD[f"{_key}-{_label}"] = ({_key: _value}, rf"KafkaBusConfig\.{_key}=")
for _key in ("create_topics", "include_stacktrace", "keep_activity"):
    for _label, _value in (("int", 1), ("str", "yes"), ("none", None)):
        BAD[f"{_key}-{_label}"] = ({_key: _value}, rf"KafkaBusConfig\.{_key} must be True or False")

VALIDATED_KEYS = {
    "bootstrap_servers", "client_settings", "publish_producer", "reproduce_producer",
    "publish_timeout_s", "reproduce_timeout_s", "consumer_settings", "poll_timeout_ms",
    "crash_policy", "join_timeout_s", "create_topics", "default_partitions", "admin_timeout_s",
    "include_stacktrace", "keep_activity", "name", "client", "consumer_factory",
    "transactional_id",
}


def test_every_field_of_the_config_has_a_bad_case() -> None:
    fields = {f.name for f in dataclasses.fields(KafkaBusConfig)}
    assert fields == VALIDATED_KEYS, "a new KafkaBusConfig field needs its bad cases here"
    covered = {key for overrides, _ in BAD.values() for key in overrides}
    assert covered == VALIDATED_KEYS


@pytest.mark.parametrize("overrides, names_key", list(BAD.values()), ids=list(BAD))
def test_a_bad_value_raises_config_error_naming_the_key(overrides: dict[str, Any],
                                                        names_key: str) -> None:
    settings: dict[str, Any] = {"bootstrap_servers": SERVERS, **overrides}
    with pytest.raises(ConfigError, match=names_key):
        KafkaBusConfig(**settings)


def test_defaults_are_valid() -> None:
    config = KafkaBusConfig(bootstrap_servers=SERVERS)
    assert config.bootstrap_servers == SERVERS
    assert (config.publish_timeout_s, config.join_timeout_s, config.default_partitions) == (10.0, 60.0, 3)
    assert config.consumer_kwargs() == {"auto_offset_reset": "earliest", "metadata_max_age_ms": 5000}


def test_a_full_valid_config_is_normalised() -> None:
    policy = CrashPolicy(restart=False)
    config = KafkaBusConfig(
        bootstrap_servers=["a:9092", "b:9092"],
        client_settings={"security_protocol": "PLAINTEXT", "connections_max_idle_ms": 60_000},
        publish_producer={"acks": "all", "linger_ms": 5},
        reproduce_producer={"acks": 1},
        publish_timeout_s=2, reproduce_timeout_s=4.5,
        consumer_settings={"session_timeout_ms": 10_000, "auto_offset_reset": "latest",
                           "enable_auto_commit": False},
        poll_timeout_ms=50, crash_policy=policy, join_timeout_s=5, create_topics=False,
        default_partitions=1, admin_timeout_s=3, include_stacktrace=True, keep_activity=True,
        name="orders",
    )
    assert config.bootstrap_servers == ("a:9092", "b:9092")
    for key in ("client_settings", "publish_producer", "reproduce_producer", "consumer_settings"):
        assert isinstance(getattr(config, key), MappingProxyType), key

    publish = config._producers().kwargs("publish")
    assert publish["acks"] == "all" and publish["linger_ms"] == 5
    assert publish["security_protocol"] == "PLAINTEXT" and publish["client_id"] == "orders-publish"
    assert publish["delivery_timeout_ms"] >= publish["linger_ms"] + publish["request_timeout_ms"]

    consumer = config.consumer_kwargs()
    assert consumer["auto_offset_reset"] == "latest" and consumer["session_timeout_ms"] == 10_000
    assert consumer["security_protocol"] == "PLAINTEXT"

    runner = config.runner_config(group="g", topics=("t",), name="orders-g")
    assert isinstance(runner, RunnerConfig)
    assert (runner.poll_timeout_ms, runner.crash_policy) == (50, policy)
    assert runner.kafka_kwargs()["bootstrap_servers"] == ["a:9092", "b:9092"]

    admin = config.admin().kwargs  # type: ignore[attr-defined]  # the kafka-python admin's
    assert admin["client_id"] == "orders-admin" and admin["bootstrap_timeout_ms"] == 3000
    assert admin["security_protocol"] == "PLAINTEXT"
