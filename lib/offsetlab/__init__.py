"""offsetlab: research notebooks about Kafka consumers, and the event-bus adapter they grew.

Subpackages: ``offsetlab.bus`` (the adapter; kafka-python + standard library only),
``offsetlab.brokers`` (start brokers), ``offsetlab.lab`` (research harness),
``offsetlab.backups`` (example domain), ``offsetlab.cli`` (the ``offsetlab`` command).
"""

__version__ = "0.1.0"
