"""A ``--sink topic`` run that lost or duplicated events says where they are
(:func:`forensics`): a sample of them on the output topic, read committed by kafka-python
and by another client (confluent-kafka, librdkafka) and read uncommitted (aborted and open
transactions included), with each record's timestamp, and which workers' handlers
published them. Saved in ``chaos.json`` (``forensics``) and summed up in one line.
"""

from __future__ import annotations

from typing import Any

from .chaos_config import ChaosResult
from .chaos_readback import where_seqs, where_seqs_librdkafka
from .chaos_workers import WorkerPool

__all__ = ["forensics"]


def forensics(result: ChaosResult, servers: str, topic: str, counts: Any, inputs: Any,
               pool: WorkerPool, say: Any) -> None:
    """Where a sample of the lost and duplicated seqs are on the output topic (a fresh
    read_committed reader, and read_uncommitted: aborted or open transactions included),
    and which workers' handlers published them."""
    dups = sorted(s for s, n in counts.items() if n > max(1, inputs.get(s, 0)))[:20]
    lost = result.lost_sample
    done = {w.name: set(map(int, w.file("done").read_text().split()))
            for w in pool.workers if w.file("done").exists()}
    f = result.forensics
    for name, seqs in (("lost", lost), ("duplicated", dups)):
        f[f"{name}_committed"] = where_seqs(servers, topic, seqs)
        f[f"{name}_uncommitted"] = where_seqs(servers, topic, seqs, committed=False)
        try:  # another client's read_committed: does it agree?
            f[f"{name}_committed_librdkafka"] = where_seqs_librdkafka(servers, topic, seqs)
        except Exception as exc:  # confluent-kafka missing or failing: said, not fatal
            f[f"{name}_committed_librdkafka"] = repr(exc)
        f[f"{name}_published_by"] = {s: sorted(w for w, got in done.items() if s in got)
                                     for s in seqs}
    def at(name: str, seqs: list[int]) -> Any:
        found = f[name]
        return found if isinstance(found, str) else [found.get(s, []) for s in seqs[:5]]

    say(f"forensics (chaos.json): lost {lost[:5]} on the output topic read committed "
        f"{at('lost_committed', lost)}, uncommitted {at('lost_uncommitted', lost)}, read "
        f"committed by librdkafka {at('lost_committed_librdkafka', lost)}; duplicated {dups[:5]} "
        f"read committed {at('duplicated_committed', dups)}, uncommitted "
        f"{at('duplicated_uncommitted', dups)}, read committed by librdkafka "
        f"{at('duplicated_committed_librdkafka', dups)}, published by "
        f"{[f['duplicated_published_by'][s] for s in dups[:5]]}")
