"""Scenario bodies shared by the in-memory bus (unit tests) and the Kafka bus (integration).

A scenario is a function taking a *driver* (see ``drivers.py``): the bus under test plus
the few things that differ between a simulated and a real run (how time passes, how to
wait for a condition, how to read a topic back, how to make names unique).
"""
