"""What a started broker gives its user."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Capability(enum.StrEnum):
    """What a broker kind can do beyond producing and consuming."""

    CONFIGURABLE = "configurable"  #: broker settings (rebalance delay, auto-create, ...) are ours to set
    RESTARTABLE = "restartable"    #: restart() brings it back on the same port with the same data
    PERSISTENT = "persistent"      #: data survives a restart (on disk)


@dataclass
class BrokerHandle:
    """A running broker. ``client_config`` holds what a kafka-python client needs to connect."""

    kind: str
    bootstrap_servers: str
    version: str
    log_path: Path | None
    capabilities: frozenset[Capability]
    cold_start_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    client_config: dict[str, Any] = field(default_factory=dict)
    _impl: Any = field(default=None, repr=False)

    def can(self, capability: Capability | str) -> bool:
        return Capability(capability) in self.capabilities

    def restart(self, *, down_s: float = 0.0) -> float:
        """Stop and start again on the same port (and data, where persistent).

        ``down_s`` keeps it down that long before starting again. Returns the seconds it took
        to answer again after the start."""
        from .errors import NotCapable

        if not self.can(Capability.RESTARTABLE) or self._impl is None:
            raise NotCapable(f"a {self.kind!r} broker cannot be restarted in place; use kind 'kafka'")
        return float(self._impl.restart(down_s=down_s))

    def stop(self) -> None:
        """Stop the broker now (also done when the context exits); idempotent."""
        if self._impl is not None:
            self._impl.stop()

    def start(self) -> float:
        """Start a stopped broker again (kinds that can restart)."""
        from .errors import NotCapable

        if not self.can(Capability.RESTARTABLE) or self._impl is None:
            raise NotCapable(f"a {self.kind!r} broker cannot be started again once stopped")
        return float(self._impl.start())

    @property
    def running(self) -> bool:
        return bool(self._impl is None or self._impl.running)

    def clients(self, **overrides: Any) -> dict[str, Any]:
        """kafka-python keyword arguments: bootstrap servers, security settings, overrides."""
        return {"bootstrap_servers": self.bootstrap_servers, **self.client_config, **overrides}
