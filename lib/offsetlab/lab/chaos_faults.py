"""The faults of a chaos run, each on its own thread: consumer SIGKILLs
(:meth:`Faults.kill_consumers`) and broker faults (:meth:`Faults.broker_faults`), at
moments drawn by :func:`schedule` in the publishing window. Every fault done (or failed) is
appended to the run's actions with its time (seconds since the run began) and printed.

**Consumer kills**: SIGKILL a random live worker, start a replacement at once in the
victim's *slot* (its failure dice; in the transactional mode its transactional id, so the
replacement's ``init_transactions`` fences the transaction the victim left open). In the
``unsafe`` negative control a kill waits (up to :data:`HOLD_WAIT_S`) for a worker holding
a committed, unhandled batch and kills that one; after the last kill the holders are
released.

**Broker faults on one node**: ``--broker-restarts``: ``BrokerHandle.restart()`` (graceful
stop, same port and data). **On a cluster** (``--nodes 3``) the restarts and the
``--broker-kills`` form one schedule, one fault at a time:

1. wait until no partition of the cluster is under-replicated (``wait_fully_replicated``,
   every topic, the internal ones included): a node that has not caught up since the last
   fault is never hit again, so at most one replica of a partition is ever missing and
   ``min.insync.replicas=2`` keeps ``acks=all`` writes possible;
2. pick the node that leads the most partitions of the run's topics (``leaders()``; a tie
   goes to the seeded RNG): the node whose loss moves the most leaders;
3. a kill SIGKILLs it and restarts it **once the controller has moved every partition of
   the run's topics it led to another node** (it fences a silent broker after
   ``broker.session.timeout.ms``, 9 s): so the clients go through the leader failover
   (new leaders, a new group or transaction coordinator when the node was one) before the
   node comes back and catches up, and the pause is what Kafka takes to notice, not a
   number of ours (capped at :data:`FENCE_WAIT_S`, reported when hit);
   a restart stops it gracefully (SIGTERM: controlled shutdown moves its leaders first)
   and starts it again at once.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from offsetlab.bus.deadline import Deadline

from .chaos_workers import Worker, WorkerPool, lines_in

__all__ = ["HOLD_WAIT_S", "FENCE_WAIT_S", "REPLICATED_WAIT_S", "schedule", "Faults"]

#: unsafe mode: how long a kill waits for a worker to hold a committed, unhandled batch
HOLD_WAIT_S = 60.0
#: the longest a killed node stays down waiting for its leaderships to move
FENCE_WAIT_S = 60.0
#: the longest a broker fault waits for the cluster to be fully replicated first
REPLICATED_WAIT_S = 180.0


def schedule(rng: random.Random, count: int, window_s: float) -> list[float]:
    """``count`` moments in the middle 90 % of the window, sorted."""
    return sorted(rng.uniform(0.05 * window_s, 0.95 * window_s) for _ in range(count))


class Faults:
    """The run's fault threads' shared state: when the window started, the abort flag, the
    seeded RNG, where actions go, and the pool and broker they act on."""

    def __init__(self, *, pool: WorkerPool, broker: Any, rng: random.Random, start: float,
                 abort: threading.Event, actions: list[dict[str, Any]],
                 say: Callable[[str], None], rel: Callable[[], float], hold: bool,
                 topics: list[str]) -> None:
        self.pool, self.broker, self.rng, self.start = pool, broker, rng, start
        self.abort, self.actions, self.say, self.rel = abort, actions, say, rel
        self.hold, self.topics = hold, topics
        self._lock = threading.Lock()

    def _record(self, action: dict[str, Any]) -> None:
        with self._lock:
            self.actions.append(action)

    def _wait_for(self, moment: float) -> bool:
        """Sleep until ``moment`` of the window; False when the run was aborted."""
        return not self.abort.wait(max(0.0, self.start + moment - time.monotonic()))

    # -- consumers -------------------------------------------------------------------------

    def kill_consumers(self, at: list[float]) -> None:
        try:
            self._kill_on_schedule(at)
        except Exception as exc:  # reported: a run whose kills did not happen says so
            self._record({"at_s": self.rel(), "action": "kill", "error": repr(exc)})
            self.say(f"+{self.rel():.1f}s killer FAILED: {exc!r}")
        finally:  # no more kills: the workers that hold a batch may handle it
            if self.hold:
                for w in self.pool.alive():
                    self.pool.release(w)

    def _pick_holder(self) -> tuple[Worker, int] | None:
        deadline = Deadline(HOLD_WAIT_S)
        while not self.abort.is_set() and not deadline.expired():
            if holders := self.pool.holding():
                return self.rng.choice(holders)
            self.abort.wait(0.05)
        return None

    def _kill_on_schedule(self, at: list[float]) -> None:
        pool = self.pool
        for i, moment in enumerate(at):
            if not self._wait_for(moment):
                return
            held: int | None = None
            if self.hold:
                picked = self._pick_holder()
                if picked is None:
                    self._record({"at_s": self.rel(), "action": "kill", "error":
                                  f"no worker held a committed batch within {HOLD_WAIT_S:.0f} s"})
                    self.say(f"+{self.rel():.1f}s kill skipped: no worker held a committed batch")
                    continue
                victim, held = picked
            else:
                alive = pool.alive()
                if not alive:
                    continue
                victim = self.rng.choice(alive)
            pool.kill(victim)
            replacement = pool.spawn(hold=self.hold and i < len(at) - 1, slot=victim.slot)
            handled = lines_in(victim.out) + lines_in(victim.file("done"))
            action: dict[str, Any] = {
                "at_s": self.rel(), "action": "kill", "worker": victim.name,
                "pid": victim.proc.pid, "slot": victim.slot, "replacement": replacement.name,
                "events_handled_by_victim": handled}
            if held is not None:
                action["committed_unhandled"] = held
            self._record(action)
            self.say(f"+{action['at_s']:.1f}s SIGKILL {victim.name} (pid {victim.proc.pid}, "
                     f"slot {victim.slot}, {handled} events handled"
                     + (f", {held} committed and unhandled" if held is not None else "")
                     + f"); started {replacement.name}")

    # -- brokers ---------------------------------------------------------------------------

    def broker_faults(self, kills_at: list[float], restarts_at: list[float]) -> None:
        """Run the broker faults in time order (see the module docstring)."""
        plan = sorted([(t, "broker_kill") for t in kills_at]
                      + [(t, "broker_restart") for t in restarts_at])
        cluster = hasattr(self.broker, "kill_node")
        for moment, kind in plan:
            if not self._wait_for(moment):
                return
            began = self.rel()
            try:
                if not cluster:
                    action = self._restart_single()
                else:
                    action = self._node_fault(kind)
            except Exception as exc:  # reported; the drain then shows what it cost
                self._record({"at_s": began, "action": kind, "error": repr(exc)})
                self.say(f"+{began:.1f}s {kind} FAILED: {exc!r}")
                return
            self._record(action)

    def _restart_single(self) -> dict[str, Any]:
        began = self.rel()
        took = self.broker.restart()
        action = {"at_s": began, "action": "broker_restart", "down_s": round(self.rel() - began, 3),
                  "answering_after_start_s": round(took, 3)}
        self.say(f"+{began:.1f}s broker restarted (down {action['down_s']:.1f} s)")
        return action

    def _leading(self) -> tuple[int, int, Counter[int]]:
        """The node leading the most of the run's partitions (ties: the RNG), how many."""
        led = Counter(n for n in self.broker.leaders(self.topics).values() if n >= 0)
        if not led:
            raise RuntimeError(f"no partition of {self.topics} has a leader")
        most = max(led.values())
        node = self.rng.choice(sorted(n for n, c in led.items() if c == most))
        return node, most, led

    def _node_fault(self, kind: str) -> dict[str, Any]:
        broker, rel = self.broker, self.rel
        asked = rel()
        waited = broker.wait_fully_replicated(REPLICATED_WAIT_S)
        node, most, led = self._leading()
        began = rel()
        action: dict[str, Any] = {"at_s": began, "action": kind, "node": node,
                                  "scheduled_wait_s": round(began - asked, 3),
                                  "waited_replicated_s": round(waited, 3),
                                  "led": most, "leaders_before": dict(sorted(led.items()))}
        if kind == "broker_kill":
            action["pid"] = broker.kill_node(node)
            self.say(f"+{began:.1f}s SIGKILL broker node {node} (pid {action['pid']}, leader of "
                     f"{most} of the run's partitions; leaders {dict(sorted(led.items()))})")
            moved = self._wait_leaders_moved(node)
            action["leaders_moved_s"] = None if moved is None else round(moved - began, 3)
        else:
            broker.stop_node(node)
            self.say(f"+{began:.1f}s graceful stop of broker node {node} (leader of {most} of "
                     "the run's partitions)")
        down_at = rel()
        took = broker.start_node(node)
        action["down_s"] = round(rel() - began, 3)
        action["restart_ready_s"] = round(took, 3)
        moved_text = ("" if kind != "broker_kill" else
                      f"; leaders moved after {action['leaders_moved_s']} s"
                      if action["leaders_moved_s"] is not None else
                      f"; leaders had not moved after {FENCE_WAIT_S:.0f} s")
        self.say(f"+{rel():.1f}s broker node {node} started again (down {action['down_s']:.1f} s"
                 f"{moved_text}; answering {took:.1f} s after its start at +{down_at:.1f}s)")
        return action

    def _wait_leaders_moved(self, node: int) -> float | None:
        """Until no partition of the run's topics is led by ``node`` or has no leader; the
        monotonic time it happened, or None after :data:`FENCE_WAIT_S`."""
        deadline = Deadline(FENCE_WAIT_S)
        while not deadline.expired() and not self.abort.is_set():
            try:
                leaders = self.broker.leaders(self.topics)
                if leaders and all(n not in (node, -1) for n in leaders.values()):
                    return self.rel()
            except Exception:  # the metadata may be unreachable for a moment: ask again
                pass
            self.abort.wait(0.25)
        return None
