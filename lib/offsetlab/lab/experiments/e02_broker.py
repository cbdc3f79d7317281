"""E02: what the broker E02's clients talk to says about itself (its auto-create setting).

:func:`check_auto_create_off` guards *missing topic, auto-create off*: the scenario is only
meaningful on a broker whose ``auto.create.topics.enable`` is false, so it asks the broker
its clients reach instead of trusting the settings it was started with.
"""

from __future__ import annotations

from kafka import KafkaAdminClient

from offsetlab.brokers import BrokerHandle

__all__ = ["broker_auto_create", "check_auto_create_off"]


def broker_auto_create(servers: str) -> str | None:
    """``auto.create.topics.enable`` as the broker answering at ``servers`` reports it
    (DescribeConfigs of broker 1; None when it does not say)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        got = admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1",
                                                     {"auto.create.topics.enable": None})],
                                     config_filter="all")
    finally:
        admin.close()
    for by_name in (got or {}).values():
        for configs in by_name.values():
            entry = configs.get("auto.create.topics.enable")
            if entry is not None:
                return str(entry.get("value") if isinstance(entry, dict) else entry).lower()
    return None


def check_auto_create_off(broker: BrokerHandle) -> None:
    """Raise unless the broker at ``broker``'s address says ``auto.create.topics.enable=false``.

    A CI run once printed "1 partitions assigned" for *missing topic, auto-create off*. The
    names are unique per run (uuid), so the topic could only have been created by a broker
    with auto-create on: a broker's start used to accept *a* metadata answer at its port, so
    when the port it chose was taken by another broker starting at the same time (two
    notebooks in parallel), the clients talked to that other broker (fixed in
    :mod:`offsetlab.brokers.kafka`: ready means its own cluster id answers). Checking the
    setting on the broker the clients talk to keeps any such mix-up an error, not a wrong
    finding."""
    value = broker_auto_create(broker.bootstrap_servers)
    if value != "false":
        raise RuntimeError(f"the broker at {broker.bootstrap_servers} reports "
                           f"auto.create.topics.enable={value!r}, not 'false': it is not the "
                           f"dedicated broker this scenario started (port taken by another broker?)")
