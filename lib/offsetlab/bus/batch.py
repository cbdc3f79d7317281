"""What a batch handler may do to the consumer: :class:`BatchContext`.

Settling is per record; at the end of a batch the runner commits ``offset + 1`` of the highest
contiguous settled record per partition and seeks back to the first unsettled one
(:meth:`BatchContext.commit_positions`, :meth:`BatchContext.first_unsettled`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from offsetlab.bus.errors import RunnerStateError
from offsetlab.bus.types import Record, TopicPartition, tp_of

if TYPE_CHECKING:
    from offsetlab.bus.runner_member import MemberThread

__all__ = ["BatchContext"]

_tp = tp_of


class BatchContext:
    """What a batch handler (and ``on_tick``) may do, on the runner thread, to the consumer.

    - ``records``: the batch (empty for ``on_tick``);
    - ``settle(record)``: the record is done; it counts toward the commit at batch end;
    - ``seek(tp, offset)``: the next fetch of ``tp`` starts at ``offset``; records of ``tp``
      later in this batch should not be processed (see :meth:`skipped`) and unsettled ones
      will be delivered again; the runner will not seek ``tp`` back itself;
    - ``pause(tps)`` / ``resume(tps)`` / ``paused()``: as :meth:`ConsumerRunner.pause`,
      applied at once; unsettled records of a paused partition are redelivered after resume;
    - ``assignment()``; ``commit_now()``: commit what is settled so far in this batch;
    - ``skipped(record)``: True when the record will be redelivered anyway (its partition
      was sought or paused in this batch, or the runner is stopping) -- don't process it;
    - ``stopping()``: ``stop()`` was requested; finish quickly.

    It has no producer: retries and dead letters are the bus's business.
    """

    def __init__(self, runner: MemberThread, records: Sequence[Record]) -> None:
        self._runner = runner
        self.records: tuple[Record, ...] = tuple(records)
        self._offsets: dict[TopicPartition, list[int]] = {}
        last: tuple[str, int] | None = None
        offsets: list[int] = []
        for r in self.records:  # records come grouped by partition: one key per group
            if last is None or r.partition != last[1] or r.topic != last[0]:
                last = (r.topic, r.partition)
                offsets = self._offsets.setdefault(TopicPartition(*last), [])
            offsets.append(r.offset)
        self._known: dict[TopicPartition, set[int]] = {tp: set(o) for tp, o in self._offsets.items()}
        self._settled: dict[TopicPartition, set[int]] = {tp: set() for tp in self._offsets}
        self._sought: dict[TopicPartition, int] = {}
        self._paused_here: set[TopicPartition] = set()

    # -- settling -------------------------------------------------------------------------
    def settle(self, record: Record) -> None:
        # a plain (topic, partition) tuple finds the TopicPartition keys (equal, same hash)
        key = (record.topic, record.partition)
        known = self._known.get(key)  # type: ignore[call-overload]
        if known is None or record.offset not in known:
            tp = _tp(record)
            raise RunnerStateError(
                f"settle(): record {tp.topic}[{tp.partition}]@{record.offset} is not in this "
                f"batch; settle records of the batch being handled, on the runner thread"
            )
        self._settled[key].add(record.offset)  # type: ignore[index]

    def is_settled(self, record: Record) -> bool:
        return record.offset in self._settled.get(_tp(record), ())

    def skipped(self, record: Record) -> bool:
        tp = _tp(record)
        return (
            tp in self._sought
            or tp in self._paused_here
            or tp in self._runner.paused()
            or self._runner._stop_requested.is_set()
        )

    def stopping(self) -> bool:
        return self._runner._stop_requested.is_set()

    # -- consumer operations ----------------------------------------------------------------
    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._runner._seek(tp, offset)
        self._sought[tp] = offset

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        tps = tuple(tps)
        self._runner._do_pause(tps)
        self._paused_here.update(tps)

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        self._runner._do_resume(tuple(tps))

    def paused(self) -> frozenset[TopicPartition]:
        return self._runner.paused()

    def assignment(self) -> frozenset[TopicPartition]:
        return self._runner.assignment()

    def commit_now(self) -> dict[TopicPartition, int]:
        """Commit settled records of this batch now; returns what was committed.

        Transactional mode: commits the batch's transaction so far and begins the next."""
        runner = self._runner
        if runner._txn is None:
            return runner._commit(self.commit_positions())
        committed = runner._commit_transaction(self.commit_positions(), self)
        runner._txn.begin()
        return committed

    # -- used by the runner at batch end ------------------------------------------------------
    def commit_positions(self) -> dict[TopicPartition, int]:
        """Per partition, last contiguous settled offset + 1 (only partitions with progress)."""
        positions: dict[TopicPartition, int] = {}
        for tp, offsets in self._offsets.items():
            settled = self._settled[tp]
            last = None
            for off in offsets:
                if off not in settled:
                    break
                last = off
            if last is not None:
                positions[tp] = last + 1
        return positions

    def first_offsets(self) -> dict[TopicPartition, int]:
        """Per partition of the batch, its first offset (where a redelivery of the whole
        batch starts: an aborted transaction)."""
        return {tp: offsets[0] for tp, offsets in self._offsets.items() if offsets}

    def first_unsettled(self) -> dict[TopicPartition, int]:
        """Per partition with a gap, the offset delivery must restart from."""
        gaps: dict[TopicPartition, int] = {}
        for tp, offsets in self._offsets.items():
            for off in offsets:
                if off not in self._settled[tp]:
                    gaps[tp] = off
                    break
        return gaps
