"""Errors raised while starting or talking to a broker.

::

    BrokerError                  root; every message names what failed and the fix
    ├── JavaNotFound             no Java 17+ (kind "kafka")
    ├── JarsUnavailable          Kafka jars not cached and Maven could not fetch them
    ├── PortInUse                a requested port is taken
    ├── BrokerExited             the broker process died while starting (log tail attached)
    ├── BrokerStartTimeout       it did not answer a metadata request in time
    ├── DockerUnavailable        kind "testcontainers" without a Docker daemon
    ├── BrokerUnreachable        kind "external": nothing answered at the address
    └── NotCapable               restart()/settings asked of a kind that cannot do it
"""

from __future__ import annotations


class BrokerError(RuntimeError):
    """Root of the broker errors."""


class JavaNotFound(BrokerError):
    pass


class JarsUnavailable(BrokerError):
    pass


class PortInUse(BrokerError):
    pass


class BrokerExited(BrokerError):
    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(f"{message}\n--- last lines of the broker log ---\n{log_tail}" if log_tail else message)
        self.log_tail = log_tail


class BrokerStartTimeout(BrokerError, TimeoutError):
    pass


class DockerUnavailable(BrokerError):
    pass


class BrokerUnreachable(BrokerError):
    pass


class NotCapable(BrokerError):
    pass
