"""E03 with the adapter's :class:`~offsetlab.bus.runner.ConsumerRunner` and a batch handler.

:func:`run_runner`: ``stop_at_failure=False`` is the seed's handler (settle everything that
worked, carry on past the failure): the runner still commits only up to the last
*contiguous* settled offset and seeks back to the gap itself. ``stop_at_failure=True`` seeks
back at the failure and skips the rest of that partition (``ctx.skipped``). With
``partitions=3`` and keys spread over them, only the failed message's partition stalls.
:func:`runner_config` is the runner's configuration (E04's too).
"""

from __future__ import annotations

import time

from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition

from offsetlab.brokers import BrokerHandle
from offsetlab.bus.config import CrashPolicy, RunnerConfig
from offsetlab.bus.deadline import Deadline
from offsetlab.bus.lifecycle import Commit, LifecycleEvent
from offsetlab.bus.runner import BatchContext, ConsumerRunner
from offsetlab.lab.experiments.e03_scenario import (
    GROUP_SETTINGS,
    Attempt,
    ProcessingFailed,
    ScenarioResult,
    new_scenario,
)
from offsetlab.lab.raw import committed_offsets, warmed_consumer
from offsetlab.lab.timeline import record_consumed, runner_listener

__all__ = ["runner_config", "run_runner"]


def runner_config(broker: BrokerHandle, topic: str, group: str, name: str,
                  crash_policy: CrashPolicy | None = None) -> RunnerConfig:
    return RunnerConfig(bootstrap_servers=broker.bootstrap_servers, group_id=group, topics=(topic,),
                        name=name, crash_policy=crash_policy or CrashPolicy(restart=False),
                        consumer_settings={"auto_offset_reset": "earliest", **GROUP_SETTINGS,
                                           **broker.client_config})


def run_runner(broker: BrokerHandle, *, n_messages: int = 5, fail_message: int = 3,
               fail_times: int | None = 1, partitions: int = 1, stop_at_failure: bool = True,
               retry_delay_s: float = 0.1, retry_window_s: float = 2.0,
               timeout_s: float = 30) -> ScenarioResult:
    """The adapter's runner with a batch handler (see the module docstring).

    Runs until every message that can succeed was processed and committed; when the failure
    is permanent (``fail_times=None``) it then goes on for ``retry_window_s`` more, whatever
    the failed message does (``result.others_done_at`` marks the moment), so that whether it
    kept being retried is measured, not waited for. ``retry_delay_s`` is slept after a
    failure (a retry back-off, so a permanent failure does not spin)."""
    name = ("runner-stop-at-failure" if stop_at_failure else "runner-settle-past") + \
        (f"-{partitions}p" if partitions > 1 else "")
    result = new_scenario(broker, name, n_messages=n_messages, fail_message=fail_message,
                       fail_times=fail_times, partitions=partitions)
    tl, who, numbers = result.timeline, "runner", result.by_position()
    committed: dict[int, int] = {}
    batches: list[tuple[list[int], list[int], list[int]]] = []
    after: list[dict[int, int]] = []

    def on_event(event: LifecycleEvent) -> None:
        if isinstance(event, Commit):
            committed.update({tp.partition: off for tp, off in event.offsets.items()})
            if after:
                after[-1] = dict(committed)

    def handler(records: list[ConsumerRecord], ctx: BatchContext) -> None:
        delivered, processed, failed = [numbers[(r.partition, r.offset)] for r in records], [], []
        batches.append((delivered, processed, failed))
        after.append(dict(committed))
        for r in records:
            record_consumed(tl, who, r)
        for r in records:
            n = numbers[(r.partition, r.offset)]
            if ctx.skipped(r):
                continue
            try:
                result.flaky(n)
            except ProcessingFailed as exc:
                failed.append(n)
                tl.record(who, "failed", topic=r.topic, partition=r.partition, offset=r.offset,
                          key=r.key, detail={"error": str(exc)})
                time.sleep(retry_delay_s)
                if stop_at_failure:
                    ctx.seek(TopicPartition(r.topic, r.partition), r.offset)
                continue
            processed.append(n)
            tl.record(who, "processed", topic=r.topic, partition=r.partition, offset=r.offset, key=r.key)
            ctx.settle(r)

    fail_at = next(m for m in result.messages if m.number == fail_message)
    if fail_times is None:  # permanent: the failed message (and, stopping there, what follows it
        # on its partition) never completes; its partition's position stays put
        blocked = {m.number for m in result.messages if m.partition == fail_at.partition
                   and (m.offset >= fail_at.offset if stop_at_failure else m.number == fail_message)}
        must_commit = [m for m in result.messages if m.partition != fail_at.partition]
    else:
        blocked, must_commit = set(), list(result.messages)

    def others_done() -> bool:
        done = set(result.flaky.processed) >= {m.number for m in result.messages} - blocked
        moved = all(committed.get(m.partition, -1) > m.offset for m in must_commit)
        return done and moved

    runner = ConsumerRunner(runner_config(broker, result.topic, result.group, who),
                            batch_handler=handler, listeners=[runner_listener(tl, who), on_event],
                            consumer_factory=warmed_consumer((result.topic,)))
    try:
        runner.run(timeout=timeout_s)
        deadline = Deadline(timeout_s)
        while not others_done():
            if deadline.expired():
                raise TimeoutError(f"{name}: not finished within {timeout_s} s "
                                   f"(processed {result.flaky.processed}, committed {committed})")
            time.sleep(0.05)
        if fail_times is None:
            result.others_done_at, result.window_s = time.monotonic(), retry_window_s
            time.sleep(retry_window_s)
    finally:
        runner.stop()
    result.attempts = [Attempt(i + 1, who, tuple(d), tuple(p), tuple(f), c)
                       for i, ((d, p, f), c) in enumerate(zip(batches, after, strict=True))]
    result.committed = committed_offsets(broker, result.group, result.topic)
    return result
