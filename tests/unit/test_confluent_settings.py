"""The confluent-kafka transport's settings: kafka-python names translated to librdkafka's,
librdkafka properties taken as they are, and errors naming the owner and the key.

No broker: building a ``confluent_kafka.Producer`` without bootstrap servers connects
nowhere, which is how the property list is checked against the installed librdkafka.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from offsetlab.bus.config import RunnerConfig
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.kafka_bus import KafkaBusConfig
from offsetlab.bus.transports import get
from offsetlab.bus.transports.confluent import compat, settings
from offsetlab.bus.transports.confluent.consumer import ConfluentConsumer, consumer_config
from offsetlab.bus.transports.confluent.producer import Producers, producer_config

CLIENT = "confluent-kafka"


def runner_config(**consumer_settings: Any) -> RunnerConfig:
    return RunnerConfig(bootstrap_servers="h:1", group_id="g", topics=("t",), name="n",
                        client=CLIENT, consumer_settings=consumer_settings)


def test_the_lab_s_kafka_python_names_translate_to_librdkafka_properties() -> None:
    conf, options = consumer_config(runner_config(
        auto_offset_reset="earliest", metadata_max_age_ms=5000, session_timeout_ms=6000,
        heartbeat_interval_ms=500, max_poll_interval_ms=7000, max_poll_records=50,
        fetch_max_wait_ms=100, request_timeout_ms=20_000, reconnect_backoff_max_ms=1000,
        retry_backoff_ms=50, security_protocol="PLAINTEXT", bootstrap_timeout_ms=2000,
        allow_auto_create_topics=False, enable_auto_commit=False))
    assert conf == {
        "auto.offset.reset": "earliest", "topic.metadata.refresh.interval.ms": 5000,
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "max.poll.interval.ms": 7000,
        "fetch.wait.max.ms": 100, "socket.timeout.ms": 20_000,
        "reconnect.backoff.max.ms": 1000, "retry.backoff.ms": 50,
        "security.protocol": "plaintext", "allow.auto.create.topics": False,
        "bootstrap.servers": "h:1", "group.id": "g", "client.id": "n",
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "logger": compat.LIBRDKAFKA_LOGGER,
    }
    assert options == {"max_poll_records": 50, "bootstrap_timeout_ms": 2000}


def test_producer_names_translate_and_the_timeouts_default_to_the_bus_timeout() -> None:
    conf, options = producer_config(
        bootstrap_servers=("a:1", "b:2"), client_id="bus-publish",
        client_settings={"session_timeout_ms": 6000, "retry_backoff_ms": 20},
        settings={"linger_ms": 5, "acks": "all", "enable_idempotence": True, "retries": 3,
                  "batch_size": 16384, "compression_type": None, "max_request_size": 4000,
                  "delivery_timeout_ms": 9000, "max_block_ms": 100},
        timeout_s=3.0)
    assert conf == {
        "partitioner": "murmur2_random", "linger.ms": 5, "reconnect.backoff.max.ms": 1000,
        "delivery.timeout.ms": 9000, "socket.timeout.ms": 3000, "retry.backoff.ms": 20,
        "acks": "all", "enable.idempotence": True, "retries": 3, "batch.size": 16384,
        "compression.type": "none", "message.max.bytes": 4000,
        "bootstrap.servers": "a:1,b:2", "client.id": "bus-publish",
        "logger": compat.LIBRDKAFKA_LOGGER,
    }  # session_timeout_ms is a consumer's: left out
    assert options == {"bootstrap_timeout_ms": 3000, "max_block_ms": 100}


def test_librdkafka_properties_pass_as_they_are_and_later_keys_win_over_aliases() -> None:
    conf, _ = settings.translate(
        {"linger_ms": 1, "queue.buffering.max.ms": 7, "message.timeout.ms": 100,
         "delivery_timeout_ms": 200, "partitioner": "consistent", "debug": "msg"},
        settings.PRODUCER)
    assert conf == {"linger.ms": 7, "delivery.timeout.ms": 200, "partitioner": "consistent",
                    "debug": "msg"}


@pytest.mark.parametrize(("value", "expected"), [
    ("none", "error"), ("latest", "latest"), ("smallest", "smallest")])
def test_auto_offset_reset_values(value: str, expected: str) -> None:
    conf, _ = settings.translate({"auto_offset_reset": value}, settings.CONSUMER)
    assert conf == {"auto.offset.reset": expected}


def test_assignors_are_named_as_librdkafka_names_them() -> None:
    class RangePartitionAssignor:  # what kafka-python's assignor classes look like
        name = "range"

    class RoundRobinPartitionAssignor:
        name = "roundrobin"

    conf, _ = settings.translate(
        {"partition_assignment_strategy": (RangePartitionAssignor, RoundRobinPartitionAssignor)},
        settings.CONSUMER)
    assert conf == {"partition.assignment.strategy": "range,roundrobin"}
    conf, _ = settings.translate({"partition_assignment_strategy": ["cooperative-sticky"]},
                                 settings.CONSUMER)
    assert conf == {"partition.assignment.strategy": "cooperative-sticky"}

    class StickyPartitionAssignor:
        name = "sticky"

    with pytest.raises(ConfigError, match=r"consumer_settings\['partition_assignment_strategy'\]"
                       r".*no librdkafka equivalent"):
        runner_config(partition_assignment_strategy=(StickyPartitionAssignor,))


def test_ssl_check_hostname_is_an_identification_algorithm() -> None:
    assert settings.translate({"ssl_check_hostname": False}, settings.ADMIN)[0] == {
        "ssl.endpoint.identification.algorithm": "none"}


ERRORS = {
    "typo": ({"sesion_timeout_ms": 1}, r"RunnerConfig\.consumer_settings\['sesion_timeout_ms'\] "
             r"is not a confluent-kafka consumer setting.*check the spelling"),
    "dotted-typo": ({"session.timeout": 1}, r"\['session.timeout'\] is not a confluent-kafka"),
    "no-equivalent": ({"api_version": (3, 9)}, r"\['api_version'\] is a kafka-python setting "
                      r"librdkafka has no equivalent for"),
    "no-equivalent-2": ({"exclude_internal_topics": True}, r"no equivalent"),
    "producer-property": ({"linger.ms": 5}, r"\['linger.ms'\] is a producer setting, not a "
                          r"consumer setting"),
    "producer-name": ({"acks": 1}, r"\['acks'\] is a producer setting"),
    "auto-commit": ({"enable_auto_commit": True}, r"\['enable_auto_commit'\] must be False"),
    "group-id": ({"group_id": "x"}, r"\['group_id'\] is set by the runner; use the RunnerConfig"),
    "group.id": ({"group.id": "x"}, r"\['group.id'\] is set by the runner"),
    "auto-store": ({"enable.auto.offset.store": True}, r"is set by the runner"),
    "consumer-timeout": ({"consumer_timeout_ms": 5}, r"\['consumer_timeout_ms'\] only affects"),
    "deserializer": ({"value_deserializer": bytes}, r"records are bytes"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_consumer_setting_errors_name_the_owner_and_key(case: str) -> None:
    given, pattern = ERRORS[case]
    with pytest.raises(ConfigError, match=pattern):
        runner_config(**given)


def test_bus_config_errors_name_their_section() -> None:
    bus = {"bootstrap_servers": "h:1", "client": CLIENT}
    with pytest.raises(ConfigError, match=r"KafkaBusConfig\.client_settings\['sasl_kerberos_name'\]"
                       r" is a kafka-python setting librdkafka has no equivalent for"):
        KafkaBusConfig(**bus, client_settings={"sasl_kerberos_name": "x"})
    with pytest.raises(ConfigError, match=r"KafkaBusConfig\.client_settings\['client_id'\] is set "
                       r"by the bus; use KafkaBusConfig\.bootstrap_servers / name instead"):
        KafkaBusConfig(**bus, client_settings={"client_id": "x"})
    with pytest.raises(ConfigError, match=r"KafkaBusConfig\.publish_producer\['lingr_ms'\] is not "
                       r"a confluent-kafka producer setting"):
        KafkaBusConfig(**bus, publish_producer={"lingr_ms": 1})
    with pytest.raises(ConfigError, match=r"KafkaBusConfig\.reproduce_producer\['partitioner'\] "
                       r"is a kafka-python setting librdkafka has no equivalent"):
        KafkaBusConfig(**bus, reproduce_producer={"partitioner": object()})
    with pytest.raises(ConfigError, match=r"KafkaBusConfig\.reproduce_producer\['key_serializer'\]"
                       r" is set by the bus"):
        KafkaBusConfig(**bus, reproduce_producer={"key_serializer": str.encode})
    with pytest.raises(ConfigError, match=r"publish_producer: delivery_timeout_ms \(10\) must be > "
                       r"linger_ms \(50\)"):
        KafkaBusConfig(**bus, publish_producer={"linger_ms": 50, "delivery_timeout_ms": 10})


def test_bus_config_on_confluent_gives_each_client_its_keys() -> None:
    config = KafkaBusConfig(
        bootstrap_servers="h:1", client=CLIENT,
        client_settings={"security_protocol": "PLAINTEXT", "session_timeout_ms": 6000,
                         "linger_ms": 3, "socket.keepalive.enable": True},
        consumer_settings={"max_poll_records": 10, "auto.offset.reset": "latest"})
    runner = config.runner_config(group="g", topics=("t",), name="n")
    assert dict(runner.consumer_settings) == {
        "auto_offset_reset": "earliest", "metadata_max_age_ms": 5000,
        "security_protocol": "PLAINTEXT", "session_timeout_ms": 6000,
        "socket.keepalive.enable": True, "max_poll_records": 10, "auto.offset.reset": "latest"}
    conf, options = consumer_config(runner)
    assert conf["auto.offset.reset"] == "latest"  # the later key wins
    assert "linger.ms" not in conf and options == {"max_poll_records": 10}
    producers = config._producers()
    assert isinstance(producers, Producers)
    publish = producers.config("publish")
    assert publish["linger.ms"] == 3 and publish["socket.keepalive.enable"] is True
    assert "session.timeout.ms" not in publish
    assert publish["delivery.timeout.ms"] == 10_000  # publish_timeout_s


def test_every_listed_property_is_one_the_installed_librdkafka_knows() -> None:
    from confluent_kafka import KafkaException, Producer

    quiet = logging.getLogger("test.librdkafka.quiet")
    quiet.disabled = True
    unknown = []
    python_keys = {"logger", "stats_cb", "throttle_cb", "oauth_cb"}
    names = (set(settings.LIBRDKAFKA_PROPERTIES) - python_keys) | {
        p for t in settings.KAFKA_PYTHON_NAMES.values() for p in t.properties}
    for name in sorted(names):
        try:
            Producer({name: "\x01", "logger": quiet})
        except KafkaException as exc:
            if "No such configuration property" in str(exc):
                unknown.append(name)
        except TypeError:  # confluent-kafka checked the value's type: the name is known
            pass
    assert unknown == []
    assert set(settings.ALIASES) | set(settings.ALIASES.values()) <= set(names)


def test_the_classifier_reads_confluents_retriable_flag_and_the_topic_name_check() -> None:
    from confluent_kafka import KafkaError, KafkaException
    from offsetlab.bus.classify import Classification, ErrorClassifier, _client_retriable

    transport = get(CLIENT)
    assert transport.name == CLIENT
    # the client's flag decides, not the classifier's default for unknown errors
    timed_out = KafkaException(KafkaError(KafkaError._TIMED_OUT, retriable=True))
    assert ErrorClassifier(unknown=Classification.FATAL).classify(timed_out) \
        is Classification.RETRIABLE
    topic_error = KafkaException(KafkaError(KafkaError.TOPIC_EXCEPTION))
    assert ErrorClassifier(unknown=Classification.RETRIABLE).classify(topic_error) \
        is Classification.FATAL
    assert _client_retriable(ValueError, ValueError("x")) is None
    compat.check_topics(["a.b_c-1", "x" * 249])
    for bad in ("not a valid topic!", "", ".", "..", "x" * 250):
        with pytest.raises(ValueError, match="not a valid topic name"):
            compat.check_topics([bad])


def test_generation_is_read_from_the_serialized_group_metadata() -> None:
    import struct

    metadata = b"CGMDv2:" + struct.pack("=i", 7) + b"group\x00member\x00\x01"
    assert compat.generation_of(metadata) == 7
    assert compat.generation_of(b"CGMDv2:\xff\xff\xff\xffg\x00\x00\x01") == -1
    assert compat.generation_of(b"something else") == -1
    assert compat.generation_of(object()) == -1


class FakeConsumer:
    """What ``factory(settings)`` may return; records the calls the transport makes."""

    def __init__(self, conf: dict[str, Any], *, fail_bootstrap: bool = False) -> None:
        self.conf = conf
        self.fail_bootstrap = fail_bootstrap
        self.closed = False

    def list_topics(self, timeout: float) -> None:
        if self.fail_bootstrap:
            raise RuntimeError("no broker")

    def close(self) -> None:
        self.closed = True


def test_open_hands_the_factory_the_settings_and_closes_what_failed_to_bootstrap() -> None:
    made: list[FakeConsumer] = []

    def factory(conf: dict[str, Any]) -> FakeConsumer:
        made.append(FakeConsumer(conf, fail_bootstrap=len(made) == 1))
        return made[-1]

    config = runner_config(max_poll_records=7, partition_assignment_strategy="cooperative-sticky")
    client = ConfluentConsumer.open(config, factory)
    assert client.consumer is made[0] and client._batch == 7 and client._incremental
    assert made[0].conf["group.id"] == "g" and made[0].conf["enable.auto.commit"] is False
    assert callable(made[0].conf["error_cb"]) and not made[0].closed
    with pytest.raises(RuntimeError, match="no broker"):
        ConfluentConsumer.open(config, factory)
    assert made[1].closed
