"""The package's curated ``__all__`` resolves, and the errors form one tree."""

from __future__ import annotations

import offsetlab.bus as bus


def test_every_exported_name_resolves():
    # KafkaBus and KafkaBusConfig resolve through the package's lazy __getattr__
    missing = [name for name in bus.__all__ if getattr(bus, name, None) is None]
    assert not missing, f"exported but not implemented: {missing}"
    assert len(bus.__all__) == len(set(bus.__all__))


def test_every_exported_error_derives_from_the_root():
    errors = [getattr(bus, n) for n in bus.__all__ if n.endswith(("Error", "Failed", "Timeout",
                                                                   "Envelope", "EventType",
                                                                   "Headers", "Unavailable"))]
    assert errors and all(issubclass(e, bus.BusError) for e in errors)
