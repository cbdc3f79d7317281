"""The package's curated ``__all__`` resolves, and the errors form one tree."""

from __future__ import annotations

import importlib.util

import offsetlab.bus as bus


def test_every_exported_name_resolves():
    missing = []
    for name in bus.__all__:
        if name in ("KafkaBus", "KafkaBusConfig") and importlib.util.find_spec("offsetlab.bus.kafka_bus") is None:
            missing.append(name)
            continue
        assert getattr(bus, name) is not None
    assert not missing, f"exported but not implemented: {missing}"
    assert len(bus.__all__) == len(set(bus.__all__))


def test_every_exported_error_derives_from_the_root():
    errors = [getattr(bus, n) for n in bus.__all__ if n.endswith(("Error", "Failed", "Timeout",
                                                                   "Envelope", "EventType",
                                                                   "Headers", "Unavailable"))]
    assert errors and all(issubclass(e, bus.BusError) for e in errors)
