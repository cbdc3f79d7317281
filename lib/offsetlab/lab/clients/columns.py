"""Which client columns can run on this machine, and why not.

``make test`` requires Node (KafkaJS tests are never skipped); ``make run`` on a machine
without Node runs everything else and prints why the KafkaJS parts were skipped. Notebooks
ask :func:`runnable_columns` and print :attr:`Columns.skipped`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from offsetlab.lab.clients.matrix import COLUMNS

__all__ = ["Columns", "runnable_columns", "column_label"]


def column_label(client: str, group_protocol: str = "classic") -> str:
    """``kafka-python``, ``kafkajs``, ``confluent-kafka`` or ``confluent-kafka (consumer)``."""
    return client if group_protocol == "classic" else f"{client} ({group_protocol})"


@dataclass(frozen=True)
class Columns:
    run: list[tuple[str, str]]
    #: column label -> the reason it is not run here
    skipped: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        text = "clients: " + ", ".join(column_label(*c) for c in self.run)
        for label, why in self.skipped.items():
            text += f"\nskipped {label}: {why}"
        return text


def runnable_columns(wanted: Sequence[tuple[str, str]] = COLUMNS) -> Columns:
    """``wanted`` without the columns this machine cannot run (KafkaJS without Node >= 18 or
    when ``npm ci`` cannot install it), with the reasons."""
    run, skipped = [], {}
    for client, proto in wanted:
        if client == "kafkajs":
            from offsetlab.lab.clients import node

            ok, why = node.node_available()
            if ok:
                try:
                    node.ensure_kafkajs()
                except Exception as exc:  # npm failed: say why, run the rest
                    ok, why = False, f"KafkaJS could not be installed: {exc}"
            if not ok:
                skipped[column_label(client, proto)] = why
                continue
        run.append((client, proto))
    return Columns(run, skipped)
