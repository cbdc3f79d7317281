"""Client settings on confluent-kafka: kafka-python's names translated to librdkafka's.

The bus takes kafka-python's setting names on every client (its defaults and the lab's
settings are written that way); this transport translates each one librdkafka has into its
dotted property (:data:`KAFKA_PYTHON_NAMES`) and also accepts librdkafka's own properties as
they are (:data:`LIBRDKAFKA_PROPERTIES`, librdkafka 2.16). A kafka-python name librdkafka
has no equivalent for (:data:`NO_EQUIVALENT`) and an unknown key raise
:class:`~offsetlab.bus.errors.ConfigError` naming the owner and the key.

A few kafka-python names are no librdkafka property but a promise this transport keeps
itself (:data:`TRANSPORT_OPTIONS`): ``max_poll_records`` (records per ``consume()``),
``bootstrap_timeout_ms`` (how long building a client waits for the first metadata answer)
and ``max_block_ms`` (how long a send waits for room in a full local queue).

Values pass through unchanged except where the clients spell them differently
(``auto_offset_reset="none"`` is librdkafka's ``"error"``, ``ssl_check_hostname`` a bool
there, ``compression_type=None`` is ``"none"``, assignor classes are names).
Keys are checked with :func:`check`; :func:`translate` gives ``(librdkafka config,
transport options)``, later keys overriding earlier ones (aliases are folded first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from offsetlab.bus.config import RUNNER_OWNED_KEYS
from offsetlab.bus.errors import ConfigError

__all__ = [
    "CONSUMER", "PRODUCER", "ADMIN", "Translation", "KAFKA_PYTHON_NAMES", "NO_EQUIVALENT",
    "TRANSPORT_OPTIONS", "LIBRDKAFKA_PROPERTIES", "ALIASES", "OWNED_PROPERTIES", "check",
    "translate", "applies_to",
]

CONSUMER, PRODUCER, ADMIN = "consumer", "producer", "admin"
_ALL = frozenset({CONSUMER, PRODUCER, ADMIN})
_C, _P = frozenset({CONSUMER}), frozenset({PRODUCER})


def _same(value: Any) -> Any:
    return value


def _offset_reset(value: Any) -> Any:
    return "error" if value == "none" else value


def _hostname_check(value: Any) -> str:
    return "https" if value else "none"


def _compression(value: Any) -> Any:
    return "none" if value is None else value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _retries(value: Any) -> Any:
    return 2_147_483_647 if value == float("inf") else value


_ASSIGNORS = {"range": "range", "roundrobin": "roundrobin",
              "cooperative-sticky": "cooperative-sticky"}


def _assignors(value: Any) -> str:
    """kafka-python's assignor classes (or names) as librdkafka's comma-separated names."""
    items: Iterable[Any] = (value,) if isinstance(value, str | type) else value
    names = []
    for item in items:
        name = item if isinstance(item, str) else getattr(item, "name", None)
        for part in (name.split(",") if isinstance(name, str) else [name]):
            if not isinstance(part, str) or part.strip() not in _ASSIGNORS:
                raise ValueError(
                    f"assignor {item!r} has no librdkafka equivalent (librdkafka has range, "
                    "roundrobin and cooperative-sticky; kafka-python's eager 'sticky' is not one)")
            names.append(part.strip())
    if not names:
        raise ValueError("needs at least one assignor")
    return ",".join(names)


@dataclass(frozen=True)
class Translation:
    """How one kafka-python name maps: the librdkafka properties it sets (none: a transport
    option), the roles (consumer, producer, admin) it applies to, and its value conversion."""

    properties: tuple[str, ...]
    roles: frozenset[str]
    convert: Callable[[Any], Any] = _same


def _t(props: str, roles: frozenset[str] = _ALL,
       convert: Callable[[Any], Any] = _same) -> Translation:
    return Translation(tuple(props.split()), roles, convert)


KAFKA_PYTHON_NAMES: Mapping[str, Translation] = {
    # every client
    "metadata_max_age_ms": _t("topic.metadata.refresh.interval.ms"),
    "request_timeout_ms": _t("socket.timeout.ms"),
    "reconnect_backoff_ms": _t("reconnect.backoff.ms"),
    "reconnect_backoff_max_ms": _t("reconnect.backoff.max.ms"),
    "retry_backoff_ms": _t("retry.backoff.ms"),
    "connections_max_idle_ms": _t("connections.max.idle.ms"),
    "receive_buffer_bytes": _t("socket.receive.buffer.bytes"),
    "send_buffer_bytes": _t("socket.send.buffer.bytes"),
    "max_in_flight_requests_per_connection": _t("max.in.flight.requests.per.connection"),
    "receive_message_max_bytes": _t("receive.message.max.bytes"),
    "client_dns_lookup": _t("client.dns.lookup"),
    "client_rack": _t("client.rack"),
    "allow_auto_create_topics": _t("allow.auto.create.topics"),
    "security_protocol": _t("security.protocol", convert=_lower),
    "ssl_cafile": _t("ssl.ca.location"),
    "ssl_certfile": _t("ssl.certificate.location"),
    "ssl_keyfile": _t("ssl.key.location"),
    "ssl_password": _t("ssl.key.password"),
    "ssl_crlfile": _t("ssl.crl.location"),
    "ssl_ciphers": _t("ssl.cipher.suites"),
    "ssl_check_hostname": _t("ssl.endpoint.identification.algorithm", convert=_hostname_check),
    "sasl_mechanism": _t("sasl.mechanism"),
    "sasl_plain_username": _t("sasl.username"),
    "sasl_plain_password": _t("sasl.password"),
    "sasl_kerberos_service_name": _t("sasl.kerberos.service.name"),
    "bootstrap_timeout_ms": _t(""),
    # consumers
    "auto_offset_reset": _t("auto.offset.reset", _C, _offset_reset),
    "session_timeout_ms": _t("session.timeout.ms", _C),
    "heartbeat_interval_ms": _t("heartbeat.interval.ms", _C),
    "max_poll_interval_ms": _t("max.poll.interval.ms", _C),
    "max_poll_records": _t("", _C),
    "fetch_max_wait_ms": _t("fetch.wait.max.ms", _C),
    "fetch_min_bytes": _t("fetch.min.bytes", _C),
    "fetch_max_bytes": _t("fetch.max.bytes", _C),
    "max_partition_fetch_bytes": _t("max.partition.fetch.bytes", _C),
    "check_crcs": _t("check.crcs", _C),
    "isolation_level": _t("isolation.level", _C),
    "group_instance_id": _t("group.instance.id", _C),
    "auto_commit_interval_ms": _t("auto.commit.interval.ms", _C),
    "partition_assignment_strategy": _t("partition.assignment.strategy", _C, _assignors),
    # producers
    "acks": _t("acks", _P),
    "enable_idempotence": _t("enable.idempotence", _P),
    "retries": _t("retries", _P, _retries),
    "linger_ms": _t("linger.ms", _P),
    "batch_size": _t("batch.size", _P),
    "compression_type": _t("compression.type", _P, _compression),
    "delivery_timeout_ms": _t("delivery.timeout.ms", _P),
    "max_request_size": _t("message.max.bytes", _P),
    "transactional_id": _t("transactional.id", _P),
    "transaction_timeout_ms": _t("transaction.timeout.ms", _P),
    "max_block_ms": _t("", _P),
}
"""kafka-python name -> librdkafka properties (``()``: a :data:`TRANSPORT_OPTIONS` key)."""

TRANSPORT_OPTIONS: frozenset[str] = frozenset(
    k for k, t in KAFKA_PYTHON_NAMES.items() if not t.properties)
"""kafka-python names this transport implements itself (no librdkafka property)."""

NO_EQUIVALENT: frozenset[str] = frozenset("""
    api_version selector socket_options metrics_enabled metrics_num_samples
    metrics_sample_window_ms metric_reporters metric_group_prefix kafka_client proxy_url
    socks5_proxy ssl_context sasl_kerberos_name sasl_kerberos_domain_name
    sasl_oauth_token_provider enable_incremental_fetch_sessions exclude_internal_topics
    default_offset_commit_callback partitioner
""".split())
"""kafka-python names librdkafka has no setting for (give a librdkafka property instead,
e.g. ``partitioner`` takes a callable there and a name here: ``"partitioner": "murmur2"``)."""

_BYTES_ONLY = frozenset({"key_serializer", "value_serializer", "key_deserializer",
                         "value_deserializer"})

_GLOBAL = """
    builtin.features client.id metadata.broker.list bootstrap.servers message.max.bytes
    message.copy.max.bytes receive.message.max.bytes max.in.flight.requests.per.connection
    max.in.flight metadata.recovery.strategy metadata.recovery.rebootstrap.trigger.ms
    topic.metadata.refresh.interval.ms metadata.max.age.ms
    topic.metadata.refresh.fast.interval.ms topic.metadata.refresh.fast.cnt
    topic.metadata.refresh.sparse topic.metadata.propagation.max.ms topic.blacklist debug
    socket.timeout.ms socket.blocking.max.ms socket.send.buffer.bytes
    socket.receive.buffer.bytes socket.keepalive.enable socket.nagle.disable socket.max.fails
    broker.address.ttl broker.address.family socket.connection.setup.timeout.ms
    connections.max.idle.ms reconnect.backoff.jitter.ms reconnect.backoff.ms
    reconnect.backoff.max.ms statistics.interval.ms enabled_events log_level log.queue
    log.thread.name enable.random.seed log.connection.close internal.termination.signal
    api.version.request api.version.request.timeout.ms api.version.fallback.ms
    broker.version.fallback allow.auto.create.topics security.protocol ssl.cipher.suites
    ssl.curves.list ssl.sigalgs.list ssl.key.location ssl.key.password ssl.key.pem
    ssl.certificate.location ssl.certificate.pem ssl.ca.location https.ca.location
    https.ca.pem ssl.ca.pem ssl.ca.certificate.stores ssl.crl.location ssl.keystore.location
    ssl.keystore.password ssl.providers ssl.engine.location ssl.engine.id
    enable.ssl.certificate.verification ssl.endpoint.identification.algorithm
    sasl.mechanisms sasl.mechanism sasl.kerberos.service.name sasl.kerberos.principal
    sasl.kerberos.kinit.cmd sasl.kerberos.keytab sasl.kerberos.min.time.before.relogin
    sasl.username sasl.password sasl.oauthbearer.config enable.sasl.oauthbearer.unsecure.jwt
    sasl.oauthbearer.method sasl.oauthbearer.client.id
    sasl.oauthbearer.client.credentials.client.id
    sasl.oauthbearer.client.credentials.client.secret sasl.oauthbearer.client.secret
    sasl.oauthbearer.scope sasl.oauthbearer.extensions sasl.oauthbearer.token.endpoint.url
    sasl.oauthbearer.grant.type sasl.oauthbearer.assertion.algorithm
    sasl.oauthbearer.assertion.private.key.file
    sasl.oauthbearer.assertion.private.key.passphrase
    sasl.oauthbearer.assertion.private.key.pem sasl.oauthbearer.assertion.file
    sasl.oauthbearer.assertion.claim.aud sasl.oauthbearer.assertion.claim.exp.seconds
    sasl.oauthbearer.assertion.claim.iss sasl.oauthbearer.assertion.claim.jti.include
    sasl.oauthbearer.assertion.claim.nbf.seconds sasl.oauthbearer.assertion.claim.sub
    sasl.oauthbearer.assertion.jwt.template.file sasl.oauthbearer.metadata.authentication.type
    sasl.oauthbearer.sub.claim.name plugin.library.paths client.rack retry.backoff.ms
    retry.backoff.max.ms client.dns.lookup enable.metrics.push metadata.request.timeout.ms
    client.software.name client.software.version
"""
_CONSUMER_ONLY = """
    group.id group.instance.id partition.assignment.strategy session.timeout.ms
    heartbeat.interval.ms group.protocol.type group.protocol group.remote.assignor
    coordinator.query.interval.ms max.poll.interval.ms enable.auto.commit
    auto.commit.interval.ms enable.auto.offset.store queued.min.messages
    queued.max.messages.kbytes fetch.wait.max.ms fetch.queue.backoff.ms
    fetch.message.max.bytes max.partition.fetch.bytes fetch.max.bytes fetch.min.bytes
    fetch.error.backoff.ms isolation.level enable.partition.eof check.crcs auto.offset.reset
    consume.callback.max.messages
"""
_PRODUCER_ONLY = """
    transactional.id transaction.timeout.ms enable.idempotence enable.gapless.guarantee
    queue.buffering.max.messages queue.buffering.max.kbytes queue.buffering.max.ms linger.ms
    message.send.max.retries retries queue.buffering.backpressure.threshold compression.codec
    compression.type compression.level batch.num.messages batch.size
    delivery.report.only.error sticky.partitioning.linger.ms request.required.acks acks
    request.timeout.ms message.timeout.ms delivery.timeout.ms partitioner
"""
# confluent-kafka's own callables that stand for librdkafka callbacks
_PYTHON_CALLBACKS = "logger stats_cb throttle_cb oauth_cb"

LIBRDKAFKA_PROPERTIES: Mapping[str, frozenset[str]] = {
    **{p: _ALL for p in (_GLOBAL + _PYTHON_CALLBACKS).split()},
    **{p: _C for p in _CONSUMER_ONLY.split()},
    **{p: _P for p in _PRODUCER_ONLY.split()},
}
"""librdkafka 2.16's properties (and confluent-kafka's callback keys) -> roles they apply to."""

ALIASES: Mapping[str, str] = {
    "metadata.broker.list": "bootstrap.servers", "max.in.flight": (
        "max.in.flight.requests.per.connection"), "sasl.mechanisms": "sasl.mechanism",
    "fetch.message.max.bytes": "max.partition.fetch.bytes",
    "queue.buffering.max.ms": "linger.ms", "message.send.max.retries": "retries",
    "compression.codec": "compression.type", "request.required.acks": "acks",
    "message.timeout.ms": "delivery.timeout.ms",
}
"""librdkafka's alias properties folded to one name, so a later key overrides an earlier one."""

OWNED_PROPERTIES: frozenset[str] = frozenset({
    "bootstrap.servers", "metadata.broker.list", "client.id", "group.id", "enable.auto.commit",
    "enable.auto.offset.store", "error_cb", "on_delivery", "on_commit",
})
"""Properties the bus or the runner sets (from its own fields) or the transport needs."""

_ROLE_NAME = {CONSUMER: "consumer", PRODUCER: "producer", ADMIN: "admin client"}


def _where(owner: str, section: str | None, key: str) -> str:
    return f"{owner}.{section}[{key!r}]" if section else f"{owner}[{key!r}]"


def _owned(where: str, owner: str, section: str | None) -> str:
    if section == "consumer_settings":
        return (f"{where} is set by the runner; use the RunnerConfig field instead "
                "(bootstrap_servers, group_id, name)")
    if section == "client_settings":
        return f"{where} is set by the bus; use {owner}.bootstrap_servers / name instead"
    return f"{where} is set by the bus; remove it"


def applies_to(key: str, role: str) -> bool:
    """Whether ``key`` (either spelling) is a setting of ``role``."""
    translation = KAFKA_PYTHON_NAMES.get(key)
    if translation is not None:
        return role in translation.roles
    return role in LIBRDKAFKA_PROPERTIES.get(key, ())


def check(settings: Mapping[str, Any], owner: str, section: str | None,
          roles: frozenset[str]) -> dict[str, Any]:
    """``settings`` (kafka-python names or librdkafka properties) validated for a client of
    one of ``roles``; ``ConfigError`` naming ``owner.section[key]`` otherwise."""
    what = " or ".join(_ROLE_NAME[r] for r in sorted(roles))
    for key, value in settings.items():
        where = _where(owner, section, key)
        if key == "enable_auto_commit" and CONSUMER in roles:
            if value is not False:
                raise ConfigError(
                    f"{where} must be False or absent: the runner commits offset + 1 of settled "
                    "records itself (auto-commit would commit records that failed)")
            continue
        if key == "consumer_timeout_ms":
            raise ConfigError(f"{where} only affects kafka-python's iteration, which the runner "
                              "does not use; remove it")
        if key in RUNNER_OWNED_KEYS or key in OWNED_PROPERTIES:
            raise ConfigError(_owned(where, owner, section))
        if key in _BYTES_ONLY:
            raise ConfigError(f"{where} is set by the bus (records are bytes); remove it")
        if key in NO_EQUIVALENT:
            raise ConfigError(
                f"{where} is a kafka-python setting librdkafka has no equivalent for "
                "(client 'confluent-kafka'); remove it or give the librdkafka property you mean")
        translation = KAFKA_PYTHON_NAMES.get(key)
        known_roles = translation.roles if translation else LIBRDKAFKA_PROPERTIES.get(key)
        if known_roles is None:
            raise ConfigError(
                f"{where} is not a confluent-kafka {what} setting (neither a kafka-python name "
                "this transport translates nor a librdkafka property); check the spelling "
                "(see offsetlab.bus.transports.confluent.settings)")
        if not known_roles & roles:
            others = " or ".join(_ROLE_NAME[r] for r in sorted(known_roles))
            raise ConfigError(f"{where} is a {others} setting, not a {what} setting; remove it")
        if translation is not None and translation.convert is not _same:
            try:
                translation.convert(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}={value!r}: {exc}") from None
    return dict(settings)


def translate(settings: Mapping[str, Any], role: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(librdkafka config, transport options)`` of the keys of ``settings`` that apply to
    ``role`` (checked settings; keys of other roles are left out)."""
    config: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "enable_auto_commit" or not applies_to(key, role):
            continue
        translation = KAFKA_PYTHON_NAMES.get(key)
        if translation is None:
            prop = ALIASES.get(key, key)
            config.pop(prop, None)  # a later key wins, in the order given
            config[prop] = value
            continue
        if not translation.properties:
            options[key] = value
            continue
        converted = translation.convert(value)
        for prop in translation.properties:
            prop = ALIASES.get(prop, prop)
            config.pop(prop, None)
            if converted is not None:
                config[prop] = converted
    return config, options
