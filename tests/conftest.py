"""Shared test set-up: integration tests get brokers started once per session."""
