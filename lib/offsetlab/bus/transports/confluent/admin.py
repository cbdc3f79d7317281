"""Topic administration on confluent-kafka (``confluent_kafka.admin.AdminClient``), for the
Kafka bus.

Partition counts come from metadata (``list_topics(topic)``) with
``allow.auto.create.topics`` off: an admin client is a producer handle underneath, whose
metadata request would otherwise create the topic it asks about
(:mod:`offsetlab.bus.transports.confluent.compat`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from offsetlab.bus.config import servers_text
from offsetlab.bus.deadline import Deadline, wait_until
from offsetlab.bus.errors import BusStateError
from offsetlab.bus.transports.confluent.compat import ADMIN_DEFAULTS, LIBRDKAFKA_LOGGER, error_of
from offsetlab.bus.transports.confluent.settings import ADMIN, translate

__all__ = ["Admin"]


class Admin:
    """A lazily connected ``AdminClient``; errors become ``BusStateError``."""

    def __init__(self, *, bootstrap_servers: str | tuple[str, ...], client_id: str,
                 client_settings: Mapping[str, Any], timeout_s: float) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        conf, _options = translate(client_settings, ADMIN)
        conf.update(ADMIN_DEFAULTS)
        conf["bootstrap.servers"] = servers_text(bootstrap_servers)
        conf["client.id"] = client_id
        conf.setdefault("logger", LIBRDKAFKA_LOGGER)
        self.config = conf
        self._admin: AdminClient | None = None

    def _client(self) -> AdminClient:
        if self._admin is None:
            admin = AdminClient(dict(self.config))
            try:
                admin.list_topics(timeout=self.timeout_s)
            except KafkaException as exc:
                raise BusStateError(
                    f"the admin client could not connect to {self.bootstrap_servers} "
                    f"within {self.timeout_s:g} s ({exc}); is the broker up?"
                ) from exc
            self._admin = admin
        return self._admin

    def partition_count(self, topic: str) -> int | None:
        try:
            metadata = self._client().list_topics(topic, timeout=self.timeout_s)
        except KafkaException as exc:
            raise self._error([topic], exc) from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return None
        return len(found.partitions) or None

    def create(self, topics: Sequence[str], partitions: int) -> None:
        admin = self._client()
        deadline = Deadline(self.timeout_s)
        futures = admin.create_topics([NewTopic(t, num_partitions=partitions) for t in topics],
                                      request_timeout=self.timeout_s)
        try:
            for future in futures.values():
                try:
                    future.result(timeout=deadline.left())
                except KafkaException as exc:
                    error = error_of(exc)
                    if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
            wait_until(lambda: all(self.partition_count(t) for t in topics),
                       timeout_s=deadline.left(), what=f"topics {list(topics)} to show",
                       interval_s=0.05)
        except (KafkaException, TimeoutError) as exc:
            raise self._error(topics, exc) from exc

    def _error(self, topics: Sequence[str], exc: BaseException) -> BusStateError:
        return BusStateError(
            f"could not create topics {list(topics)} on {self.bootstrap_servers} "
            f"within {self.timeout_s:g} s: {type(exc).__name__}: {exc}; "
            "create them yourself and pass create_topics=False, or check the broker")

    def close(self) -> None:
        self._admin = None  # AdminClient has no close(); dropping it destroys the handle
