"""What a chaos run watches while it drains (:class:`Progress`): the processed counts (the
workers' ``.seq`` files, or the output topic read committed), the dead letters read back,
the handler calls per kind from the workers' files, and an activity mark that changes
whenever a handler was called or a record arrived, for the quiet wait before the workers
are stopped.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from .chaos_accounting import DeadLetter
from .chaos_readback import TopicReader, dead_letter_of, seq_of
from .chaos_workers import ProcessedTally, WorkerPool, lines_in

__all__ = ["Progress"]

#: seconds between two reads of the output and dead-letter topics while draining
READ_EVERY_S = 1.0


class Progress:
    """The run's processed counts and dead letters so far (see the module docstring)."""

    def __init__(self, *, pool: WorkerPool, servers: str, sink: str, processed_topic: str,
                 dead_letter_topic: str | None) -> None:
        self._pool, self._sink = pool, sink
        self._files = ProcessedTally()
        self.output: Counter[int] = Counter()
        self.letters: list[DeadLetter] = []
        self._readers: list[TopicReader] = []
        self._read_at = 0.0
        if sink == "topic":
            self._readers.append(TopicReader(servers, processed_topic, self._take_output))
        if dead_letter_topic is not None:
            self._readers.append(TopicReader(servers, dead_letter_topic, self._take_letter))

    def _take_output(self, record: Any) -> None:
        self.output[seq_of(record.value)] += 1

    def _take_letter(self, record: Any) -> None:
        self.letters.append(dead_letter_of(record))

    def update(self, *, force: bool = False) -> Counter[int]:
        """The processed counts now (topics are read at most every :data:`READ_EVERY_S`
        unless ``force``)."""
        if force or time.monotonic() - self._read_at >= READ_EVERY_S:
            for reader in self._readers:
                reader.catch_up()
            self._read_at = time.monotonic()
        if self._sink == "topic":
            return self.output
        return self._files.update([w.out for w in self._pool.workers])

    def dead_lettered(self) -> set[int]:
        return {d.seq for d in self.letters}

    def calls(self) -> dict[str, int]:
        """Handler calls per kind from the workers' files: ``ok`` (recorded or published),
        ``fail`` (the seeded retriable error), ``rej`` (poison rejected)."""
        ok_kind = "done" if self._sink == "topic" else "seq"
        workers = self._pool.workers
        return {"ok": sum(lines_in(w.file(ok_kind)) for w in workers),
                "fail": sum(lines_in(w.file("fail")) for w in workers),
                "rej": sum(lines_in(w.file("rej")) for w in workers)}

    def activity(self) -> tuple[int, ...]:
        """Changes whenever a handler was called or a record was read back."""
        return (*self.calls().values(), sum(self.output.values()), len(self.letters))

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
