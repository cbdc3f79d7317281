"""E10's finders on hand-made data, each coming out both ways (no broker); the log readers on
lines copied from a Kafka 4.1.1 cluster run; the group's offsets partition as Kafka computes it."""

from __future__ import annotations

from offsetlab.lab.experiments import e10_findings as ff
from offsetlab.lab.experiments.e10_failover import java_hash, offsets_partition
from offsetlab.lab.experiments.e10_logs import (
    coordinator_lines,
    error_class,
    leader_changes,
    producer_log_errors,
)
from offsetlab.lab.findings import assert_flips, flips

KILL, LEADER = 100.0, 110.0


@flips(ff.lost)
def test_lost_is_acknowledged_and_not_read_back() -> None:
    assert assert_flips(ff.lost("acks=1", [0, 1, 2], [0, 1, 2, 3]),
                        ff.lost("acks=1", [0, 1, 2], [0, 2])) == (False, True)


@flips(ff.written_twice)
def test_written_twice_ignores_retry_copies() -> None:
    copy = [(0, 1), (1, 1), (1, 2)]            # the bus's copy of 1: attempt 2
    twice = [(0, 1), (1, 1), (1, 1)]
    assert assert_flips(ff.written_twice("acks=all", copy), ff.written_twice("acks=all", twice)) == (
        False, True)


@flips(ff.acked_while_frozen)
def test_acked_while_frozen_counts_sends_of_the_window_acknowledged_before_the_kill() -> None:
    # sent before the window and acknowledged in it; sent in it, acknowledged after the
    # kill or never: none counts
    outside = [(1.0, 3.0), (4.0, 12.0), (5.0, None), (11.0, 11.5)]
    inside = [*outside, (5.0, 6.0)]
    assert assert_flips(ff.acked_while_frozen("acks=all", outside, 2.0, 10.0),
                        ff.acked_while_frozen("acks=all", inside, 2.0, 10.0)) == (False, True)


@flips(ff.producer_ids)
def test_producer_ids_all_none_some() -> None:
    assert assert_flips(ff.producer_ids("acks=1", [1000, 1000, 0]),
                        ff.producer_ids("acks=1", [-1, -1])) == ("all", "none")
    assert ff.producer_ids("x", [-1, 3]).value == "some"
    assert ff.producer_ids("x", []).value == "no batches"


@flips(ff.coordinator_moved)
def test_coordinator_moved_from_the_killed_node() -> None:
    assert assert_flips(ff.coordinator_moved(3, [3, 3], [1]), ff.coordinator_moved(3, [3], [3])) == (
        True, False)
    assert ff.coordinator_moved(3, [1], [2]).value is False   # it was never on the killed node
    assert ff.coordinator_moved(3, [3], []).value is False    # nobody took over


@flips(ff.rebalances)
def test_rebalances_between_kill_and_stop() -> None:
    assert assert_flips(ff.rebalances([50.0, 130.0, None], KILL, 120.0),
                        ff.rebalances([50.0, 105.0], KILL, 120.0)) == (0, 1)


@flips(ff.missed)
def test_missed_counts_acknowledged_never_delivered() -> None:
    assert assert_flips(ff.missed([0, 1, 2], [0, 1, 1, 2]), ff.missed([0, 1, 2], [0, 2])) == (0, 1)


@flips(ff.retry_after_leader)
def test_retry_after_leader_compares_with_the_new_leader() -> None:
    waited = ff.retry_after_leader(LEADER + 0.5, KILL, LEADER, KILL + 3)
    from_memory = ff.retry_after_leader(KILL + 3.01, KILL, LEADER, KILL + 3)
    assert assert_flips(waited, from_memory) == (True, False)


def test_retry_after_leader_not_measured_when_due_outside_the_outage() -> None:
    assert ff.retry_after_leader(KILL - 1, KILL, LEADER, KILL - 2).value == "not measured"
    assert ff.retry_after_leader(LEADER + 2, KILL, LEADER, LEADER + 1).value == "not measured"
    assert ff.retry_after_leader(None, KILL, LEADER, KILL + 3).value == "not measured"
    assert ff.retry_after_leader(LEADER + 1, KILL, None, KILL + 3).value == "not measured"


@flips(ff.retry_once)
def test_retry_once_is_one_failure_then_one_copy() -> None:
    assert assert_flips(ff.retry_once([2, 1]), ff.retry_once([1, 2, 2])) == (True, False)


# -- the logs -------------------------------------------------------------------------------
NODE1 = [
    "2026-11-30T16:10:01.522+0000 [kafka-1-metadata-loader-event-handler] INFO state.change.logger - "
    "[Broker id=1] Leader e10-x.acks-1-0 with topic id Some(ZAo) starts at leader epoch 1 from "
    "offset 14 with partition epoch 1, high watermark 14, ISR [1,3], adding replicas [] and "
    "removing replicas [] . Previous leader Some(2) and previous leader epoch was 0.",
    "2026-11-30T16:09:47.445+0000 [kafka-1-metadata-loader-event-handler] INFO state.change.logger - "
    "[Broker id=1] Leader e10-x.acks-1-0 with topic id Some(ZAo) starts at leader epoch 0 from "
    "offset 0 with partition epoch 0, high watermark 0, ISR [1,2,3], adding replicas [] and "
    "removing replicas [] . Previous leader None and previous leader epoch was -1.",
    "2026-11-30T16:10:07.645+0000 [group-coordinator-event-processor-0] INFO org.apache.kafka."
    "coordinator.group.GroupMetadataManager - [GroupCoordinator id=1 topic=__consumer_offsets "
    "partition=2] [Group g-1] Member m has left group through explicit `LeaveGroup` request; "
    "client reason: the consumer is being closed",
]
NODE3 = [
    "2026-11-30T16:10:01.545+0000 [kafka-3-metadata-loader-event-handler] INFO state.change.logger - "
    "[Broker id=3] Follower e10-x.acks-1-0 starts at leader epoch 1 from offset 14 with partition "
    "epoch 1 and high watermark 14. Current leader is 1. Previous leader Some(1) and previous "
    "leader epoch was 1.",
    "2026-11-30T16:09:47.673+0000 [group-coordinator-event-processor-0] INFO org.apache.kafka."
    "coordinator.group.GroupMetadataManager - [GroupCoordinator id=3 topic=__consumer_offsets "
    "partition=2] Preparing to rebalance group g-1 in state PreparingRebalance with old generation 0 "
    "(reason: Adding new member m).",
]


def test_leader_changes_reads_the_leader_lines_after_a_time() -> None:
    got = leader_changes({1: NODE1, 3: NODE3}, ["e10-x.acks-1-0"], since=1796054990.0)
    assert [(c["node"], c["epoch"], c["offset"]) for c in got] == [(1, 1, 14)]
    assert len(leader_changes({1: NODE1, 3: NODE3}, ["e10-x.acks-1-0"])) == 2
    assert leader_changes({1: NODE1}, ["other-0"]) == []


def test_coordinator_lines_name_the_node_in_time_order() -> None:
    got = coordinator_lines({1: NODE1, 3: NODE3}, "g-1")
    assert [(c["node"], c["partition"]) for c in got] == [(3, 2), (1, 2)]
    assert coordinator_lines({1: NODE1}, "g-2") == []


def test_producer_log_errors_by_client_id() -> None:
    lines = [(1.0, "<Sender client_id=p-1 transactional_id=None>: Got error produce response on "
                   "topic-partition t-0, retrying (inf attempts left): KafkaConnectionError: x"),
             (2.0, "<KafkaProducer client_id=p-2 transactional_id=None>: Idempotence will be disabled"),
             (3.0, "<Sender client_id=p-9 transactional_id=None>: NotLeaderOrFollowerError")]
    got = producer_log_errors(lines, {"p-1": "acks=all", "p-2": "acks=1"})
    assert [(e["setting"], e["error"]) for e in got] == [("acks=all", "KafkaConnectionError"),
                                                         ("acks=1", "other")]
    assert error_class("NotLeaderOrFollowerError: leader moved") == "NotLeaderOrFollowerError"


def test_offsets_partition_is_kafkas_abs_hash_modulo() -> None:
    # the broker put group e10-group-e41e8807 on __consumer_offsets partition 2 of 3
    # ([GroupCoordinator id=1 topic=__consumer_offsets partition=2] in a cluster run)
    assert java_hash("e10-group-e41e8807") == -1842795071
    assert offsets_partition("e10-group-e41e8807", 3) == 2
    assert java_hash("") == 0 and java_hash("a") == 97
