"""E04: manual commits per message (the seed's ``fail02``), and the off-by-one.

The seed turned auto-commit off and committed after each message, skipping the one that
failed. Two things go wrong, and both come from the same fact (a committed offset is the
*position to resume from*, E03):

- **loss**: the commit after a later message moves the position past the failed one, so no
  consumer of the group will see it again;
- **off-by-one**: committing ``record.offset`` (what the seed did at first) instead of
  ``record.offset + 1`` says "resume *at* the last processed message", so after a restart
  (close the consumer, start a new one in the same group) that message is processed again --
  the seed's "on restart it reads the message before the failed message".

Raw scenarios (one partition, messages 1..n; message ``fail_message`` fails on its first
attempt only, a transient failure such as a dependency that was down): a first consumer
handles every message and commits after each success; then a new consumer of the group (the
restart) reads from the committed position to the end with the same code. Four modes, the
product of:

- ``commit``: ``"offset+1"`` (right) or ``"offset"`` (the off-by-one);
- ``on_failure``: ``"skip"`` (log it and go on: the seed) or ``"stop"`` (stop consuming at the
  failure, as a crashing consumer does, and let the restart retry it).

:func:`run_runner` does the same with the adapter's
:class:`~offsetlab.bus.runner.ConsumerRunner` and a message handler that raises: the runner
commits ``offset + 1`` of settled records only, the raised error is a crash, the crash policy
restarts the consumer, and it resumes at the failed message. A restart after it reads nothing.

Results are :class:`~offsetlab.lab.experiments.e03_batch_failure.ScenarioResult` (lost,
duplicated, per-attempt table); :func:`summary_row` gives the table row per mode.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.config import CrashPolicy
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.lifecycle import Commit, Connect, LifecycleEvent
from offsetlab.bus.runner import ConsumerRunner
from offsetlab.lab.experiments.e03_batch_failure import (
    Attempt,
    BatchLog,
    ProcessingFailed,
    RawBatchHandler,
    ScenarioResult,
    new_scenario,
    restart_and_finish,
    run_raw_consumer,
    runner_config,
    warmed_consumer,
)
from offsetlab.lab.timeline import record_consumed, runner_listener

CommitMode = Literal["offset+1", "offset"]
FailureMode = Literal["skip", "stop"]


def per_message_handler(commit: CommitMode, on_failure: FailureMode) -> RawBatchHandler:
    """The seed's ``eachMessage`` with manual commits, as a raw batch handler: each record is
    processed and, if that worked, its partition committed at ``offset + 1`` or ``offset``."""
    if commit not in ("offset+1", "offset") or on_failure not in ("skip", "stop"):
        raise ValueError(f"commit must be 'offset+1' or 'offset' and on_failure 'skip' or "
                         f"'stop', got {commit!r}, {on_failure!r}")
    delta = 1 if commit == "offset+1" else 0

    def handle(consumer: KafkaConsumer, records: list[ConsumerRecord], log: BatchLog) -> bool:
        for r in records:
            if log.process(r):
                log.commit(consumer, r, r.offset + delta)
            elif on_failure == "stop":
                return False  # the consumer stops here, committing nothing more
        return True

    return handle


def mode_name(commit: CommitMode, on_failure: FailureMode) -> str:
    return f"commit {commit}, " + ("skip the failure" if on_failure == "skip" else "stop at the failure")


def run_raw(broker: BrokerHandle, *, commit: CommitMode, on_failure: FailureMode,
            n_messages: int = 5, fail_message: int = 2, timeout_s: float = 30) -> ScenarioResult:
    """A first consumer with per-message commits, then a restart (see the module docstring)."""
    handler = per_message_handler(commit, on_failure)
    result = new_scenario(broker, f"raw-{'plus1' if commit == 'offset+1' else 'offset'}-{on_failure}",
                          n_messages=n_messages, fail_message=fail_message, fail_times=1,
                          partitions=1, prefix="e04")
    result.name = mode_name(commit, on_failure)
    result.attempts += run_raw_consumer(broker, result, "consumer", handler, timeout_s=timeout_s)
    return restart_and_finish(broker, result, handler, timeout_s)


def run_runner(broker: BrokerHandle, *, n_messages: int = 5, fail_message: int = 2,
               backoff_s: float = 0.2, timeout_s: float = 30) -> ScenarioResult:
    """The adapter's runner with a message handler that raises on the failure (a crash,
    restarted by the crash policy after ``backoff_s``); then a raw restart reads what is left."""
    result = new_scenario(broker, "runner", n_messages=n_messages, fail_message=fail_message,
                          fail_times=1, partitions=1, prefix="e04")
    result.name = "runner, handler raises"
    tl, numbers = result.timeline, result.by_position()
    committed: dict[int, int] = {}
    incarnations: list[tuple[list[int], list[int], list[int], dict[int, int]]] = []

    def on_event(event: LifecycleEvent) -> None:
        if isinstance(event, Connect):
            incarnations.append(([], [], [], dict(committed)))
        elif isinstance(event, Commit):
            committed.update({tp.partition: off for tp, off in event.offsets.items()})
            if incarnations:
                incarnations[-1][3].update(committed)

    def who() -> str:
        return "runner" if len(incarnations) <= 1 else f"runner (restart {len(incarnations) - 1})"

    def handler(r: ConsumerRecord) -> None:
        n = numbers[(r.partition, r.offset)]
        delivered, processed, failed, _ = incarnations[-1]
        delivered.append(n)
        record_consumed(tl, who(), r)
        try:
            result.flaky(n)
        except ProcessingFailed as exc:
            failed.append(n)
            tl.record(who(), "failed", topic=r.topic, partition=r.partition, offset=r.offset,
                      key=r.key, detail={"error": str(exc)})
            raise
        processed.append(n)
        tl.record(who(), "processed", topic=r.topic, partition=r.partition, offset=r.offset, key=r.key)

    policy = CrashPolicy(restart=True, max_restarts=3, backoff_s=backoff_s, max_backoff_s=backoff_s)
    runner = ConsumerRunner(runner_config(broker, result.topic, result.group, "runner", policy),
                            handler=handler, listeners=[on_event, runner_listener(tl, "runner")],
                            consumer_factory=warmed_consumer((result.topic,)))
    end = result.end_offsets[0]
    try:
        runner.run(timeout=timeout_s)
        deadline = Deadline(timeout_s)
        while committed.get(0, -1) < end:
            if deadline.expired():
                raise TimeoutError(f"runner did not commit to the end ({end}) within {timeout_s} s: "
                                   f"committed {committed}, processed {result.flaky.processed}")
            time.sleep(0.05)
    finally:
        runner.stop()
    for i, (delivered, processed, failed, after) in enumerate(incarnations):
        if delivered:
            result.attempts.append(Attempt(len(result.attempts) + 1,
                                           "runner" if i == 0 else f"runner (restart {i})",
                                           tuple(delivered), tuple(processed), tuple(failed),
                                           dict(after)))
    # the same restart check as the raw modes: a plain consumer of the group, committing offset+1
    return restart_and_finish(broker, result, per_message_handler("offset+1", "skip"), timeout_s)


def summary_row(result: ScenarioResult) -> dict[str, Any]:
    """One row of the per-mode table: what was lost, duplicated and re-read after the restart."""
    return {"mode": result.name,
            "lost": result.lost(),
            "duplicated": result.duplicated(),
            "restart re-read": sorted(result.restart_delivered or ()),
            "processed (order)": list(result.flaky.processed),
            "committed at end": result.committed.get(0),
            "end offset": result.end_offsets[0]}


__all__ = ["CommitMode", "FailureMode", "mode_name", "per_message_handler", "run_raw",
           "run_runner", "summary_row"]
