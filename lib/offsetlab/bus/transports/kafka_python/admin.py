"""Topic administration on kafka-python (``KafkaAdminClient``), for the Kafka bus."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaAdminClient

from offsetlab.bus.errors import BusStateError
from offsetlab.bus.transports.kafka_python.compat import io_threads, reap_io_threads

__all__ = ["Admin"]


class Admin:
    """A lazily connected ``KafkaAdminClient``; errors become ``BusStateError``."""

    def __init__(self, *, bootstrap_servers: str | tuple[str, ...], client_id: str,
                 client_settings: Mapping[str, Any], timeout_s: float) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        timeout_ms = round(timeout_s * 1000)
        kwargs: dict[str, Any] = {k: v for k, v in client_settings.items()
                                  if k in KafkaAdminClient.DEFAULT_CONFIG}
        kwargs.setdefault("request_timeout_ms", min(30_000, timeout_ms))
        kwargs.update(bootstrap_servers=list(bootstrap_servers)
                      if isinstance(bootstrap_servers, tuple) else bootstrap_servers,
                      client_id=client_id, bootstrap_timeout_ms=timeout_ms)
        self.kwargs = kwargs
        self._admin: KafkaAdminClient | None = None

    def _client(self) -> KafkaAdminClient:
        if self._admin is None:
            before = io_threads()
            try:
                self._admin = KafkaAdminClient(**self.kwargs)
            except Exception as exc:
                reap_io_threads(before, self.kwargs["client_id"])
                raise BusStateError(
                    f"the admin client could not connect to {self.bootstrap_servers} "
                    f"within {self.timeout_s:g} s ({type(exc).__name__}: {exc}); "
                    "is the broker up?"
                ) from exc
        return self._admin

    def partition_count(self, topic: str) -> int | None:
        try:
            [described] = self._client().describe_topics([topic])
        except kafka_errors.KafkaError as exc:
            raise self._error([topic], exc) from exc
        if described.get("error_code", 0) != 0:
            return None
        return len(described.get("partitions") or ()) or None

    def create(self, topics: Sequence[str], partitions: int) -> None:
        timeout_ms = round(self.timeout_s * 1000)
        admin = self._client()
        try:
            admin.create_topics({t: {"num_partitions": partitions} for t in topics},
                                timeout_ms=timeout_ms, raise_errors=False)
            admin.wait_for_topics(list(topics), timeout_ms=timeout_ms)
        except kafka_errors.KafkaError as exc:
            raise self._error(topics, exc) from exc

    def _error(self, topics: Sequence[str], exc: BaseException) -> BusStateError:
        return BusStateError(
            f"could not create topics {list(topics)} on {self.bootstrap_servers} "
            f"within {self.timeout_s:g} s: {type(exc).__name__}: {exc}; "
            "create them yourself and pass create_topics=False, or check the broker")

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except Exception:  # best effort: the bus is going away
                pass
