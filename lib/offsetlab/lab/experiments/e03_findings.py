"""E03's findings: each one a finder over a recorded
:class:`~offsetlab.lab.experiments.e03_scenario.ScenarioResult` (deliveries, the handler's
attempts with their times, committed offsets read back from the broker); no broker here.
``label`` is the scenario's name in the finding ("raw, seek back", ...)."""

from __future__ import annotations

from offsetlab.lab.experiments.e03_scenario import ScenarioResult
from offsetlab.lab.findings import Finding, finder

__all__ = ["lost", "any_lost", "restart_delivered", "delivered_after_failure",
           "resumes_after_failed_batch", "processed_twice", "stalled_partitions",
           "messages_waiting", "retried_after_others", "others_processed_once"]


@finder("raw, commit past the failure: lost", "raw, seek back: lost", "runner, seed's handler: lost",
        "runner, stop at failure: lost")
def lost(label: str, r: ScenarioResult) -> Finding:
    """Never processed, yet behind its partition's committed position (sorted)."""
    return Finding(f"{label}: lost", r.lost(), rule="never processed and behind the committed position",
                   measured=r.committed)


@finder("raw, commit past the failure: messages lost > 0")
def any_lost(label: str, r: ScenarioResult) -> Finding:
    return Finding(f"{label}: messages lost > 0", len(r.lost()) > 0, measured=len(r.lost()))


@finder("raw, commit past the failure: delivered to the restarted consumer")
def restart_delivered(label: str, r: ScenarioResult) -> Finding:
    """What a new consumer of the group was handed from the committed position."""
    return Finding(f"{label}: delivered to the restarted consumer", list(r.restart_delivered or ()))


@finder("raw, seek back: delivered after the seek-back", "runner, stop at failure: delivered after the failure")
def delivered_after_failure(name: str, r: ScenarioResult) -> Finding:
    """The messages of the batch right after the first batch with a failure."""
    return Finding(name, r.delivered_after_first_failure())


@finder("runner, seed's handler: committed after the failed batch resumes at")
def resumes_after_failed_batch(label: str, r: ScenarioResult) -> Finding:
    """The committed position after the first batch with a failure, in words (per partition
    the message it resumes at)."""
    failed = next((a for a in r.attempts if a.failed), None)
    return Finding(f"{label}: committed after the failed batch resumes at",
                   r.next_message(failed.committed) if failed else "no failed batch")


@finder("runner, seed's handler: processed twice", "runner, stop at failure: processed twice")
def processed_twice(label: str, r: ScenarioResult) -> Finding:
    return Finding(f"{label}: processed twice", r.duplicated())


@finder("keys over {} partitions: stalled partitions")
def stalled_partitions(partitions: int, r: ScenarioResult) -> Finding:
    """How many partitions' committed position is short of their end."""
    return Finding(f"keys over {partitions} partitions: stalled partitions", len(r.stalled_partitions()),
                   measured={"committed": r.committed, "end": r.end_offsets})


@finder("keys over {} partitions: messages waiting")
def messages_waiting(partitions: int, r: ScenarioResult) -> Finding:
    """Messages at or after their partition's committed position (sorted)."""
    return Finding(f"keys over {partitions} partitions: messages waiting", r.stuck_messages())


@finder("keys over {} partitions: failed message retried >= 2 times after the other partitions were committed")
def retried_after_others(partitions: int, r: ScenarioResult, fail_message: int,
                         retry_delay_s: float) -> Finding:
    """Whether the failing message kept being retried after every message of the other
    partitions was processed and committed (``r.others_done_at``), within the window the run
    went on for (``r.window_s``): the run stops on that time, not on a number of tries, so a
    runner that stopped retrying shows as False. The back-off allows about ``window /
    retry_delay_s`` retries; 2 is far below that (a loaded machine slows retries, it does
    not stop them) and far above a runner that gave up (0)."""
    times = r.flaky.attempt_times.get(fail_message, [])
    after = [t for t in times if r.others_done_at is not None and t > r.others_done_at]
    allowed = None if not r.window_s else round(r.window_s / retry_delay_s, 1)
    return Finding(f"keys over {partitions} partitions: failed message retried >= 2 times after the "
                   f"other partitions were committed", len(after) >= 2,
                   rule=f"attempts of message {fail_message} after the others were committed >= 2 "
                        f"(the back-off allows ~{allowed} in the window)",
                   measured={"retries after": len(after), "window_s": r.window_s,
                             "allowed by the back-off": allowed, "attempts in all": len(times)})


@finder("keys over {} partitions: other messages processed once")
def others_processed_once(partitions: int, r: ScenarioResult) -> Finding:
    """Every message not waiting behind the failure was processed exactly once."""
    counts = {n: c for n, c in r.processed_counts().items() if n not in r.stuck_messages()}
    return Finding(f"keys over {partitions} partitions: other messages processed once",
                   bool(counts) and all(c == 1 for c in counts.values()), measured=counts)
