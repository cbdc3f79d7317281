"""The answers to the seed's questions (offsetlab.lab.answers): chosen from findings, each
outcome reachable, a missing finding said not raised, the names real (a renamed finding in a
notebook breaks a test here), and NotebookSession.finding/answer's files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from offsetlab.lab.answers import QUESTIONS, answer_for, experiment_label, jsonable
from offsetlab.lab.findings import all_finders, finder_for_name
from offsetlab.lab.notebook import NotebookSession

ROOT = Path(__file__).resolve().parents[2]

E02_OK = ("connect: returns ConsumerRunner | subscribe: - | start/run: returns GroupJoin, 1 "
          "partitions | commit: Commit emitted | close: returns STOPPED")
E02_INVALID = ("connect: returns ConsumerRunner | subscribe: - | start/run: raises "
               "JoinFailed(ValueError) | commit: - | close: returns CRASHED")

#: what the committed notebooks found (their findings cells' output), per experiment: only
#: the findings the answers rest on (and one other, which must not matter)
TYPICAL: dict[str, dict[str, Any]] = {
    "01_run_blocking": {
        "runner: run() returned within 500 ms of its assignment": True,
        "runner: start() returned before the group join": True,
        "runner: every message consumed exactly once": True,
        "dynamic member restarted right after a kill: its join waited for": "the session timeout",
        "static member restarted right after a kill: its join waited for": "nothing",
        "kafkajs: a restart after a SIGKILL waits out the dead member's session": True,
        "eager: messages handled twice": 0},
    "02_errors_and_events": {
        "runner / success": E02_OK,
        "runner / invalid topic name": E02_INVALID,
        "runner events / handler raises": ["connect", "group_join", "crash", "disconnect",
                                           "connect", "group_join", "stop", "disconnect"],
        "kafka-python / handler raises / notes":
            "commit() moved the position past the failed record: True",
        "runner events / success": ["connect", "group_join", "stop", "disconnect"]},
    "03_batch_failure": {
        "raw, commit past the failure: messages lost > 0": True,
        "runner, seed's handler: lost": [],
        "keys over 3 partitions: stalled partitions": 1,
        "raw, seek back: lost": []},
    "04_manual_commit_loss": {
        "skipping a failure loses it, whatever is committed": True,
        "commit offset: the restart starts at the last message processed before it": True,
        "commit offset+1: the restart re-reads nothing it had processed": True,
        "runner, handler raises: lost == 0 and processed twice == 0": True,
        "runner: nothing processed twice after a handler exception, but after a kill": True,
        "max_poll: only the setting whose batches outlast max_poll_interval_ms got the member removed": True,
        "runner, handler raises: the restarted consumer starts at message": 2},
    "05_main_topic_retry": {
        "bus transient: [lost, duplicated, dead-lettered]": [[], [], []],
        "raw poison: dead-lettered": [2],
        "raw transient: processing order": [0, 1, 3, 4, 2],
        "raw crash, offset: [lost, duplicated]": [[], [2]],
        "outage: healthy throughput during it, retry topic / main topic >= 1.25": True,
        "copy-then-commit window, raw: message 2 processed [no kill, killed]": [1, 2],
        "copy-then-commit window, bus: message 2 processed [no kill, killed]": [1, 2],
        "raw no re-produce: lost": [2]},
    "06_retry_topic": {
        "outage: healthy throughput during it, retry topic / main topic >= 1.25": True,
        "outage: lost per pipeline": {"raw-retrier": 0, "raw-move-back": 0,
                                      "bus-retry-topic": 0, "bus-main-topic": 0},
        "outage: raw retriers' retries that failed during the outage [process, move-back]": [0, 0],
        "outage: bus-retry-topic retries that failed during the outage >= 1": True,
        "outage: retry topics processed some key out of order [raw, bus]": [True, True],
        "outage: the same probe, healthy throughput during it, raw retrier / bus with breaker >= 2": True,
        "raw: deliveries per message, read from the topics": {0: 1, 1: 1, 2: 6, 3: 1, 4: 1}},
    "07_pause_on_dependency": {
        "raw-pause: rebalances during the outage >= 1": False,
        "bus-depends-on: rebalances during the outage >= 1": False,
        "raw-sleep: rebalances during the outage >= 1": True,
        "raw-sleep: messages processed twice >= 1": True,
        "raw-sleep: messages lost": 0,
        "sleeping, session 6 s < max poll 15 s: worker removed by": "max poll interval",
        "sleeping, session 15 s > max poll 6 s: worker removed by": "max poll interval",
        "sleeping, session 6 s < max poll 15 s: broker kept the sleeping worker past its session "
        "timeout": True,
        "raw-pause + rebalance: pause held through the rebalance": True,
        "bus-depends-on + rebalance: pause held through the rebalance": True,
        "kafkajs, session < max poll: a blocked handler's member removed by": "session timeout",
        "kafkajs: all partitions paused longer than both clocks, membership kept": True,
        "kafkajs: paused on a failing dependency, membership kept and nothing lost": False},
    "08_event_bus_end_to_end": {
        "same final state on both buses": True,
        "final state fields that differ between the buses": [],
        "kafka: events left pending on aggregates": 0,
        "kafka: dependency calls while the breaker was open": 0,
        "kafka: final statuses": [("a1", "sent")]},
}

#: E09's findings carry the column: one name per column from a template
E09_COLUMNS = ("kafka-python", "kafkajs", "confluent-kafka", "confluent-kafka (KIP-848)")
E09_SESSION = "blocked handler, session < max poll: columns whose member the session timeout removed"
E09_PAUSE_ERROR = "{}: paused on a failing dependency, membership kept and nothing lost"
E09_STATIC = "{}: a static member's restart does not wait out the dead member's session"
E09_OFFSET = "{}: committing message.offset makes a restarted member handle messages again"
E09_IDIOM = "{}: the idiomatic commit makes a restarted member handle nothing again"
E09_HOLD = "{}: the first member of a new group holds partitions only after the initial rebalance delay"
E09_DOWN = "{}: a down broker is reported within 20 s"


def e09(template: str, values: tuple[Any, ...]) -> dict[str, Any]:
    return {template.format(c): v for c, v in zip(E09_COLUMNS, values, strict=True)}


TYPICAL["09_client_conformance"] = {
    E09_SESSION: ["kafkajs"],
    **e09(E09_PAUSE_ERROR, (True, False, True, True)),
    **e09(E09_STATIC, (True, "unsupported", True, "fatal _FATAL")),
    **e09(E09_OFFSET, (True, True, True, True)), **e09(E09_IDIOM, (True, True, True, True)),
    **e09(E09_HOLD, (True, True, True, False)), **e09(E09_DOWN, (False, True, True, True)),
    "kafkajs: run() (the first poll with an assignment) returns after the group join": True}

#: per experiment, the answer the committed findings give
EXPECTED = {
    "01_run_blocking": "run() returns once the group join completed, start() at once; consumption "
                       "goes on in the background, every message once; a member restarted right "
                       "after a kill waits until the dead member's session times out "
                       "(kafka-python); with a group.instance.id it takes the dead member's "
                       "place at once; on KafkaJS a restarted member waited out the dead "
                       "member's session too (most likely where the seed's 21 s went)",
    "03_batch_failure": "no: a group commits one position per partition, and committing past the "
                        "failed message lost it; the runner (contiguous commit, seek back to the "
                        "failure) lost nothing with the seed's handler; a message that keeps "
                        "failing stalls only its own partition",
    "07_pause_on_dependency": "yes: a consumer that pauses and keeps polling kept its place "
                              "through an outage longer than the session timeout and max poll "
                              "interval; sleeping in the handler instead lost the group: a "
                              "rebalance, messages processed twice; the broker removed the "
                              "sleeping kafka-python worker at its max poll interval in both "
                              "settings, the "
                              "broker kept it past its session timeout: heartbeats went on while "
                              "it slept; the pause held through a rebalance (raw kafka-python "
                              "and the bus); on KafkaJS, the seed's client, the broker removed a "
                              "blocked handler's member by session timeout (session shorter than "
                              "max poll), pause() kept its place, its docs' pause-then-throw "
                              "pattern lost it",
}

EXPECTED["09_client_conformance"] = (
    "no: they differ on a blocked handler, pausing on a failing dependency, static membership, "
    "the initial rebalance delay, a down broker; a handler that blocks had its member removed by "
    "the session timeout on kafkajs (session shorter than max poll); pausing on a failing "
    "dependency (the client's documented way) kept the member's place on kafka-python, "
    "confluent-kafka, confluent-kafka (KIP-848), not on kafkajs; a static member's restart "
    "skipped the dead member's session on kafka-python, confluent-kafka, not on confluent-kafka "
    "(KIP-848) (kafkajs: no static membership); committing message.offset made a restarted "
    "member handle messages again on every client; the idiomatic commit (offset + 1) re-read "
    "nothing on every client; the initial rebalance delay held back a new group's first member "
    "on kafka-python, kafkajs, confluent-kafka; a broker down at start was reported within the "
    "threshold by kafkajs, confluent-kafka, confluent-kafka (KIP-848), later by kafka-python")

#: one other value for every finding an answer rests on (the flip the tests make)
FLIPS: dict[str, dict[str, Any]] = {
    "01_run_blocking": {
        "runner: run() returned within 500 ms of its assignment": False,
        "runner: start() returned before the group join": False,
        "runner: every message consumed exactly once": False,
        "dynamic member restarted right after a kill: its join waited for": "nothing",
        "static member restarted right after a kill: its join waited for": "the session timeout",
        "kafkajs: a restart after a SIGKILL waits out the dead member's session": False},
    "02_errors_and_events": {
        "runner / success": E02_OK.replace("returns GroupJoin, 1 partitions", "returns None"),
        "runner / invalid topic name": E02_INVALID.replace("raises JoinFailed(ValueError)",
                                                           "returns GroupJoin"),
        "runner events / handler raises": ["connect", "group_join", "stop", "disconnect"],
        "kafka-python / handler raises / notes":
            "commit() moved the position past the failed record: False"},
    "03_batch_failure": {
        "raw, commit past the failure: messages lost > 0": False,
        "runner, seed's handler: lost": [3],
        "keys over 3 partitions: stalled partitions": 3},
    "04_manual_commit_loss": {
        "skipping a failure loses it, whatever is committed": False,
        "commit offset: the restart starts at the last message processed before it": False,
        "commit offset+1: the restart re-reads nothing it had processed": False,
        "runner, handler raises: lost == 0 and processed twice == 0": False,
        "runner: nothing processed twice after a handler exception, but after a kill": False,
        "max_poll: only the setting whose batches outlast max_poll_interval_ms got the member removed": False},
    "05_main_topic_retry": {
        "bus transient: [lost, duplicated, dead-lettered]": [[2], [], []],
        "raw poison: dead-lettered": [],
        "raw transient: processing order": [0, 1, 2, 3, 4],
        "raw crash, offset: [lost, duplicated]": [[], []],
        "outage: healthy throughput during it, retry topic / main topic >= 1.25": False,
        "copy-then-commit window, raw: message 2 processed [no kill, killed]": [1, 1],
        "copy-then-commit window, bus: message 2 processed [no kill, killed]": [1, 1]},
    "06_retry_topic": {
        "outage: healthy throughput during it, retry topic / main topic >= 1.25": False,
        "outage: lost per pipeline": {"raw-retrier": 0, "raw-move-back": 2,
                                      "bus-retry-topic": 0, "bus-main-topic": 0},
        "outage: raw retriers' retries that failed during the outage [process, move-back]": [1, 0],
        "outage: bus-retry-topic retries that failed during the outage >= 1": False,
        "outage: retry topics processed some key out of order [raw, bus]": [False, False],
        "outage: the same probe, healthy throughput during it, raw retrier / bus with breaker >= 2": False},
    "07_pause_on_dependency": {
        "sleeping, session 6 s < max poll 15 s: worker removed by": "session timeout",
        "sleeping, session 15 s > max poll 6 s: worker removed by": "not removed",
        "sleeping, session 6 s < max poll 15 s: broker kept the sleeping worker past its session "
        "timeout": False,
        "raw-pause + rebalance: pause held through the rebalance": False,
        "bus-depends-on + rebalance: pause held through the rebalance": False,
        "raw-pause: rebalances during the outage >= 1": True,
        "bus-depends-on: rebalances during the outage >= 1": True,
        "raw-sleep: rebalances during the outage >= 1": False,
        "raw-sleep: messages processed twice >= 1": False,
        "kafkajs, session < max poll: a blocked handler's member removed by": "max poll interval",
        "kafkajs: all partitions paused longer than both clocks, membership kept": False,
        "kafkajs: paused on a failing dependency, membership kept and nothing lost": True},
    "08_event_bus_end_to_end": {
        "final state fields that differ between the buses": ["statuses"],
        "kafka: events left pending on aggregates": 2,
        "kafka: dependency calls while the breaker was open": 1},
}

FLIPS["09_client_conformance"] = {
    E09_SESSION: [],
    **e09(E09_PAUSE_ERROR, (False, True, False, False)),
    **e09(E09_STATIC, (False, True, False, True)),
    **e09(E09_OFFSET, (False, False, False, False)), **e09(E09_IDIOM, (False, False, False, False)),
    **e09(E09_HOLD, (False, False, False, True)), **e09(E09_DOWN, (True, False, False, False))}

#: every worded outcome of every answer: (experiment, findings changed from TYPICAL, a phrase
#: only that outcome says)
OUTCOMES = [
    ("01_run_blocking", {}, "run() returns once the group join completed, start() at once"),
    ("01_run_blocking", {"runner: start() returned before the group join": False},
     "but start() did not return before it"),
    ("01_run_blocking", {"runner: run() returned within 500 ms of its assignment": False},
     "run() did not return within 500 ms of its group join"),
    ("01_run_blocking", {}, "consumption goes on in the background, every message once"),
    ("01_run_blocking", {"runner: every message consumed exactly once": False},
     "not every message was consumed exactly once"),
    ("01_run_blocking", {}, "waits until the dead member's session times out"),
    ("01_run_blocking", {"dynamic member restarted right after a kill: its join waited for": "nothing"},
     "a member restarted right after a kill did not wait for the dead member"),
    ("01_run_blocking",
     {"dynamic member restarted right after a kill: its join waited for": "the rebalance timeout"},
     "a member restarted right after a kill waited for the rebalance timeout"),
    ("01_run_blocking", {}, "with a group.instance.id it takes the dead member's place at once"),
    ("01_run_blocking",
     {"static member restarted right after a kill: its join waited for": "the session timeout"},
     "with a group.instance.id it still waited for the session timeout"),
    ("01_run_blocking", {}, "on KafkaJS a restarted member waited out the dead member's session too"),
    ("01_run_blocking", {"kafkajs: a restart after a SIGKILL waits out the dead member's session": False}, "KafkaJS's restarted member did not wait it out"),
    ("01_run_blocking", {"kafkajs: a restart after a SIGKILL waits out the dead member's session": "never joined"}, "KafkaJS: never joined"),
    ("02_errors_and_events", {}, "run() returns the group join or raises JoinFailed"),
    ("02_errors_and_events", FLIPS["02_errors_and_events"] | {"runner / success": E02_OK},
     "an invalid topic name did not make it raise JoinFailed (start/run: returns GroupJoin)"),
    ("02_errors_and_events", {"runner / success": FLIPS["02_errors_and_events"]["runner / success"]},
     "run() did not return the group join on success (start/run: returns None)"),
    ("02_errors_and_events", {}, "a crash event, then a restart and a new join"),
    ("02_errors_and_events", {"runner events / handler raises": ["connect", "group_join", "crash"]},
     "a raising handler is a crash event, with no restart"),
    ("02_errors_and_events", {"runner events / handler raises": ["connect", "group_join"]},
     "a raising handler produced no crash event"),
    ("02_errors_and_events", {}, "moves the position past the failed record"),
    ("02_errors_and_events", {"kafka-python / handler raises / notes": "...record: False"},
     "did not move past the failed record"),
    ("03_batch_failure", {}, "committing past the failed message lost it"),
    ("03_batch_failure", {"raw, commit past the failure: messages lost > 0": False},
     "committing past the failed message lost nothing in this run"),
    ("03_batch_failure", {}, "lost nothing with the seed's handler"),
    ("03_batch_failure", {"runner, seed's handler: lost": [3, 4]},
     "the runner lost [3, 4] with the seed's handler"),
    ("03_batch_failure", {}, "stalls only its own partition"),
    ("03_batch_failure", {"keys over 3 partitions: stalled partitions": 0}, "stalled no partition"),
    ("03_batch_failure", {"keys over 3 partitions: stalled partitions": 2}, "stalled 2 partitions"),
    ("04_manual_commit_loss", {}, "lost whether offset or offset + 1 is committed"),
    ("04_manual_commit_loss", {"skipping a failure loses it, whatever is committed": False},
     "skipping a failure did not lose it in every commit mode"),
    ("04_manual_commit_loss", {}, "re-processes the last message on every restart, offset + 1 "
                                  "re-reads nothing"),
    ("04_manual_commit_loss",
     {"commit offset+1: the restart re-reads nothing it had processed": False},
     "and offset + 1 re-read some too"),
    ("04_manual_commit_loss",
     {"commit offset: the restart starts at the last message processed before it": False},
     "committing offset did not restart at the last message processed"),
    ("04_manual_commit_loss", FLIPS["04_manual_commit_loss"],
     "neither offset nor offset + 1 restarted where expected"),
    ("04_manual_commit_loss", {}, "lost and repeated nothing after a handler exception"),
    ("04_manual_commit_loss", {"runner, handler raises: lost == 0 and processed twice == 0": False},
     "the runner lost or repeated a message"),
    ("04_manual_commit_loss", {}, "its restart process again what was not committed (the runner too)"),
    ("04_manual_commit_loss",
     {"runner: nothing processed twice after a handler exception, but after a kill": False},
     "the runner's kill case did not differ from its exception case"),
    ("04_manual_commit_loss", {}, "a poll batch that took longer than max_poll_interval_ms got the "
                                  "member removed"),
    ("04_manual_commit_loss",
     {"max_poll: only the setting whose batches outlast max_poll_interval_ms got the member removed": False},
     "the member's removal did not follow the batch time"),
    ("04_manual_commit_loss",
     {"max_poll: only the setting whose batches outlast max_poll_interval_ms got the member removed":
      "not read (no Kafka broker log)"},
     "was not read (no broker log)"),
    ("05_main_topic_retry", {}, "yes: re-producing a failed message and committing offset + 1 "
                                "loses nothing"),
    ("05_main_topic_retry", {"bus transient: [lost, duplicated, dead-lettered]": [[], [2], []]},
     "no: re-producing a failed message to the main topic lost [] and processed twice [2]"),
    ("05_main_topic_retry", {}, "a poison message is dead-lettered"),
    ("05_main_topic_retry", {"raw poison: dead-lettered": []}, "a poison message was not dead-lettered"),
    ("05_main_topic_retry", {}, "the copy is processed after later messages (order is lost)"),
    ("05_main_topic_retry", {"raw transient: processing order": [0, 1, 2, 3, 4]},
     "the retried message kept its place in the order"),
    ("05_main_topic_retry", {}, "committing offset instead re-processes a record"),
    ("05_main_topic_retry", {"raw crash, offset: [lost, duplicated]": [[], []]},
     "committing offset re-processed nothing"),
    ("05_main_topic_retry", {}, "it holds healthy keys back"),
    ("05_main_topic_retry",
     {"outage: healthy throughput during it, retry topic / main topic >= 1.25": False},
     "a retry topic did not keep healthy keys 1.25x faster"),
    ("06_retry_topic", {}, "yes: with a retry topic healthy keys kept >= 1.25x"),
    ("06_retry_topic",
     {"outage: healthy throughput during it, retry topic / main topic >= 1.25": False},
     "a retry topic did not keep healthy keys >= 1.25x"),
    ("06_retry_topic", {}, "no pipeline lost an item"),
    ("06_retry_topic", {"outage: lost per pipeline": {"a": 0, "b": 3}}, "items were lost {'b': 3}"),
    ("06_retry_topic", {}, "spent no retry on the outage, while the bus's clock-driven retries did"),
    ("06_retry_topic",
     {"outage: bus-retry-topic retries that failed during the outage >= 1": False},
     "neither the waiting retrier nor the bus spent a retry on the outage"),
    ("06_retry_topic",
     {"outage: raw retriers' retries that failed during the outage [process, move-back]": [0, 2]},
     "even the retrier that waits spent retries on the outage [0, 2]"),
    ("05_main_topic_retry", {}, "left a second copy: the message was processed twice (raw, bus)"),
    ("05_main_topic_retry",
     {"copy-then-commit window, bus: message 2 processed [no kill, killed]": [1, 1]},
     "processed twice (raw)"),
    ("05_main_topic_retry",
     {"copy-then-commit window, raw: message 2 processed [no kill, killed]": [1, 1],
      "copy-then-commit window, bus: message 2 processed [no kill, killed]": [1, 1]},
     "a kill between the copy's acknowledgement and the commit duplicated nothing"),
    ("06_retry_topic", {}, "paused the main topic too"),
    ("06_retry_topic",
     {"outage: the same probe, healthy throughput during it, raw retrier / bus with breaker >= 2": False},
     "kept healthy keys within 2x of the raw retrier"),
    ("06_retry_topic", {}, "a key's later messages overtake its retried ones"),
    ("06_retry_topic",
     {"outage: retry topics processed some key out of order [raw, bus]": [False, False]},
     "per-key order was kept"),
    ("07_pause_on_dependency", {}, "yes: a consumer that pauses and keeps polling kept its place"),
    ("07_pause_on_dependency", {"bus-depends-on: rebalances during the outage >= 1": True},
     "no: a paused consumer (bus-depends-on) was rebalanced during the outage"),
    ("07_pause_on_dependency",
     {"sleeping, session 6 s < max poll 15 s: worker removed by": "session timeout"},
     "removed the sleeping worker by session timeout (session shorter) and by max poll interval"),
    ("07_pause_on_dependency",
     {"sleeping, session 6 s < max poll 15 s: broker kept the sleeping worker past its session "
      "timeout": False},
     "at its max poll interval in both settings; the pause"),
    ("07_pause_on_dependency", {}, "the pause held through a rebalance"),
    ("07_pause_on_dependency", {"raw-pause + rebalance: pause held through the rebalance": False},
     "a rebalance undid the pause (raw-pause)"),
    ("07_pause_on_dependency", {"bus-depends-on + rebalance: pause held through the rebalance":
                                "not tested: the partition did not come back while paused"},
     "a rebalance while paused was not tested (bus-depends-on)"),
    ("07_pause_on_dependency", {}, "lost the group: a rebalance, messages processed twice"),
    ("07_pause_on_dependency", {"raw-sleep: messages processed twice >= 1": False},
     "cost a rebalance, nothing processed twice"),
    ("07_pause_on_dependency", {"raw-sleep: rebalances during the outage >= 1": False},
     "did not cost a rebalance in this run"),
    ("07_pause_on_dependency", {}, "on KafkaJS, the seed's client, the broker removed a blocked "
     "handler's member by session timeout (session shorter than max poll), pause() kept its "
     "place, its docs' pause-then-throw pattern lost it"),
    ("07_pause_on_dependency",
     {"kafkajs: all partitions paused longer than both clocks, membership kept": False,
      "kafkajs: paused on a failing dependency, membership kept and nothing lost": True},
     "pause() did not keep its place, so did its docs' pause-then-throw pattern"),
    ("08_event_bus_end_to_end", {}, "yes: the same service on the in-memory bus and on Kafka"),
    ("08_event_bus_end_to_end", {"final state fields that differ between the buses":
                                     ["sent", "statuses"]},
     "no: the in-memory bus and the Kafka bus ended in different states (sent, statuses differ)"),
    ("08_event_bus_end_to_end", {}, "no event was left pending on an aggregate"),
    ("08_event_bus_end_to_end", {"kafka: events left pending on aggregates": 3},
     "3 events were left pending on aggregates"),
    ("08_event_bus_end_to_end", {}, "the open breaker stopped every dependency call"),
    ("08_event_bus_end_to_end", {"kafka: dependency calls while the breaker was open": 2},
     "2 dependency calls went out while the breaker was open"),
]

OUTCOMES += [
    ("09_client_conformance", {}, "no: they differ on a blocked handler, pausing on a failing"),
    ("09_client_conformance", {**e09(E09_PAUSE_ERROR, (True,) * 4),
                               **e09(E09_STATIC, (True,) * 4), **e09(E09_HOLD, (True,) * 4),
                               **e09(E09_DOWN, (True,) * 4), E09_SESSION: []},
     "yes: every row compared came out the same on every client"),
    ("09_client_conformance", {E09_SESSION: []}, "removed by the session timeout on none"),
    ("09_client_conformance", {E09_SESSION: list(E09_COLUMNS)},
     "removed by the session timeout on every client"),
    ("09_client_conformance", {E09_PAUSE_ERROR.format("kafkajs"): True},
     "kept the member's place on every client"),
    ("09_client_conformance", {E09_STATIC.format("confluent-kafka (KIP-848)"): True},
     "session on kafka-python, confluent-kafka, confluent-kafka (KIP-848) (kafkajs: no static"),
    ("09_client_conformance", {E09_OFFSET.format("kafkajs"): False},
     "messages again on kafka-python, confluent-kafka, confluent-kafka (KIP-848);"),
    ("09_client_conformance", {**e09(E09_IDIOM, (False,) * 4)}, "re-read nothing on none"),
    ("09_client_conformance", {E09_HOLD.format("confluent-kafka (KIP-848)"): True},
     "held back a new group's first member on every client"),
    ("09_client_conformance", {E09_DOWN.format("kafka-python"): True},
     "reported within the threshold by every client"),
]


# -- E10 (offsetlab.lab.experiments.e10_answer) ----------------------------------------------
E10_LOST, E10_TWICE = "{}: acknowledged records lost after the leader died", "{}: records written twice"
E10_IDS = "{}: record batches in the new leader's log with a producer id"
E10_COORD = "the group's coordinator moved off the killed node"
E10_REB = "consumer group: rebalances between the kill and the end of writing"
E10_RETRY = ("the retry copy waiting when the leader died was delivered after the new leader "
             "took over")
TYPICAL["10_cluster_failover"] = {
    E10_LOST.format("acks=all"): False, E10_TWICE.format("acks=all"): False,
    E10_LOST.format("acks=1"): True, E10_TWICE.format("acks=1"): False,
    E10_IDS.format("acks=all"): "all", E10_IDS.format("acks=1"): "none",
    E10_COORD: True, E10_REB: 0, E10_RETRY: True,
    "the retry copy was handled exactly once": True}
EXPECTED["10_cluster_failover"] = (
    "acks=all lost no acknowledged record, and wrote none twice; acks=1 lost acknowledged records "
    "(the leader alone had them), and wrote none twice; kafka-python's acks=1 producer is not "
    "idempotent: its record batches carry no producer id (nothing lets the broker drop a retried "
    "batch it already has), the acks=all producer's all do; the consumer group's coordinator "
    "moved to a surviving node, with no rebalance; the retry copy that was waiting for its due "
    "time was delivered only after the new leader took over, once")
FLIPS["10_cluster_failover"] = {
    E10_LOST.format("acks=all"): True, E10_TWICE.format("acks=all"): True,
    E10_LOST.format("acks=1"): False, E10_TWICE.format("acks=1"): True,
    E10_IDS.format("acks=all"): "some", E10_IDS.format("acks=1"): "all",
    E10_COORD: False, E10_REB: 1, E10_RETRY: False}
OUTCOMES += [
    ("10_cluster_failover", {}, "acks=all lost no acknowledged record"),
    ("10_cluster_failover", {E10_LOST.format("acks=all"): True}, "acks=all lost acknowledged records"),
    ("10_cluster_failover", {E10_TWICE.format("acks=all"): True},
     "acks=all lost no acknowledged record, and wrote some twice"),
    ("10_cluster_failover", {E10_LOST.format("acks=1"): False}, "acks=1 lost no acknowledged record"),
    ("10_cluster_failover", {E10_TWICE.format("acks=1"): True}, "(the leader alone had them), and wrote some twice"),
    ("10_cluster_failover", {E10_IDS.format("acks=1"): "all"},
     "record batches with a producer id: acks=all all, acks=1 all"),
    ("10_cluster_failover", {E10_COORD: False}, "coordinator did not move off the killed node"),
    ("10_cluster_failover", {E10_REB: 2}, "moved to a surviving node, with 2 rebalance(s)"),
    ("10_cluster_failover", {E10_RETRY: False}, "delivered at its due time, before the new leader"),
    ("10_cluster_failover", {E10_RETRY: "not measured"}, "so its wait was not measured"),
]


def test_every_experiment_has_a_question_and_test_data() -> None:
    assert set(QUESTIONS) == set(TYPICAL) == set(FLIPS)
    for stem, q in QUESTIONS.items():
        assert q.experiment == experiment_label(stem) == f"E{stem[:2]}"
        assert q.question.endswith("?") and "\n" not in q.question
        resolved = answer_for(stem, TYPICAL[stem]).rests_on
        assert len(resolved) == len(q.rests_on), (stem, set(q.rests_on) - set(resolved))
        assert set(resolved) == set(FLIPS[stem]), stem
        assert len(answer_for(stem, TYPICAL[stem]).answer.splitlines()) == 1


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_the_committed_findings_give_these_answers(stem: str) -> None:
    assert answer_for(stem, TYPICAL[stem]).answer == EXPECTED[stem]


@pytest.mark.parametrize(("stem", "name"), [(s, n) for s in sorted(FLIPS) for n in FLIPS[s]])
def test_flipping_a_finding_an_answer_rests_on_changes_the_answer(stem: str, name: str) -> None:
    before = answer_for(stem, TYPICAL[stem])
    after = answer_for(stem, {**TYPICAL[stem], name: FLIPS[stem][name]})
    assert after.answer != before.answer
    assert after.rests_on[name] == jsonable(FLIPS[stem][name])


@pytest.mark.parametrize("stem", sorted(TYPICAL))
def test_a_finding_it_does_not_rest_on_does_not_change_the_answer(stem: str) -> None:
    other = next(n for n in TYPICAL[stem] if n not in FLIPS[stem])
    assert (answer_for(stem, {**TYPICAL[stem], other: "something else"}).answer
            == answer_for(stem, TYPICAL[stem]).answer)


@pytest.mark.parametrize(("stem", "changes", "phrase"), OUTCOMES,
                         ids=[f"{s[:2]}-{i}" for i, (s, _, _) in enumerate(OUTCOMES)])
def test_every_outcome_can_be_reached(stem: str, changes: dict[str, Any], phrase: str) -> None:
    assert phrase in answer_for(stem, {**TYPICAL[stem], **changes}).answer


def test_the_outcomes_of_each_experiment_differ() -> None:
    for stem in QUESTIONS:
        texts = [answer_for(s, {**TYPICAL[s], **c}).answer for s, c, _ in OUTCOMES if s == stem]
        changed = [c for s, c, _ in OUTCOMES if s == stem]
        assert len(set(texts)) == len({json.dumps(c, sort_keys=True, default=str)
                                       for c in changed}), stem


@pytest.mark.parametrize(("stem", "name"), [(s, n) for s in sorted(FLIPS) for n in FLIPS[s]])
def test_a_missing_finding_is_said_not_raised(stem: str, name: str) -> None:
    findings = {k: v for k, v in TYPICAL[stem].items() if k != name}
    got = answer_for(stem, findings)
    shown = re.sub(r"\b3\b", "{}", name) if stem == "03_batch_failure" and "keys over" in name else name
    if stem == "07_pause_on_dependency" and "max poll" in name:  # E07's clock settings
        shown = re.sub(r"\d+ s\b", "{}", name)
    if stem == "09_client_conformance":  # the threshold, a parameter of E09
        shown = re.sub(r"within \d+ s\b", "within {} s", name)
    assert f'not measured in this run: "{shown}" missing' in got.answer
    assert name not in got.rests_on


def test_no_findings_at_all_answer_not_measured() -> None:
    for stem in QUESTIONS:
        got = answer_for(stem, {})
        assert got.answer.startswith("not measured in this run: "), stem
        assert got.rests_on == {}


def test_a_tansu_run_of_e01_still_answers_what_it_measured() -> None:
    """E01 on Tansu skips the dedicated brokers (restart, sweep): the 21 s part says so."""
    f = {k: v for k, v in TYPICAL["01_run_blocking"].items() if "restart" not in k}
    text = answer_for("01_run_blocking", f).answer
    assert text.startswith("run() returns once the group join completed")
    assert ('the 21 s: not measured in this run: "dynamic member restarted right after a kill: '
            'its join waited for" missing') in text
    assert text.endswith('KafkaJS: not measured in this run: "kafkajs: a restart after a SIGKILL '
                         'waits out the dead member\'s session" missing')


def test_e01_without_the_static_part_says_so() -> None:
    f = {k: v for k, v in TYPICAL["01_run_blocking"].items() if not k.startswith("static")}
    assert ('static membership: not measured in this run: "static member restarted right after a '
            'kill: its join waited for" missing') in answer_for("01_run_blocking", f).answer


def test_findings_read_back_from_json_answer_the_same() -> None:
    for stem in QUESTIONS:
        for changes in [{}, FLIPS[stem]]:
            f = {**TYPICAL[stem], **changes}
            as_strings = {k: (str(v) if isinstance(v, bool) else v) for k, v in f.items()}
            assert answer_for(stem, as_strings).answer == answer_for(stem, f).answer


def test_an_unknown_stem_is_an_error() -> None:
    with pytest.raises(KeyError, match="no question for '99_nothing'"):
        answer_for("99_nothing", {})


def test_jsonable_turns_numpy_and_pandas_into_plain_values() -> None:
    value = {"a": np.bool_(True), "b": np.int64(3), "c": np.float64(0.5), "d": (1, 2),
             "e": pd.Series({"x": np.int64(1)}), "f": np.array([1, 2]), 7: {3, 1}}
    assert jsonable(value) == {"a": True, "b": 3, "c": 0.5, "d": [1, 2], "e": {"x": 1},
                               "f": [1, 2], "7": [1, 3]}
    assert json.loads(json.dumps(jsonable(value))) == jsonable(value)


# -- the notebooks ----------------------------------------------------------------------------
NOTEBOOKS = {p.stem: p for p in sorted((ROOT / "notebooks").glob("[01][0-9]_*.ipynb"))
             if p.stem != "00_broker_smoke"}


def _findings_cells(stem: str) -> tuple[list[str], str]:
    nb = json.loads(NOTEBOOKS[stem].read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    cells = ["".join(c["source"]) for c in nb["cells"]
             if "findings" in c.get("metadata", {}).get("tags", [])]
    return cells, "\n".join(code)


def test_notebooks_01_to_10_are_the_experiments_with_questions() -> None:
    assert sorted(NOTEBOOKS) == sorted(QUESTIONS)


@pytest.mark.parametrize("stem", sorted(QUESTIONS))
def test_the_last_findings_cell_ends_with_lab_answer(stem: str) -> None:
    cells, _ = _findings_cells(stem)
    assert cells, stem
    assert cells[-1].rstrip().splitlines()[-1] == "lab.answer()"
    assert all("lab.answer()" not in c for c in cells[:-1])
    for cell in cells:  # measured numbers go to findings_detail.json, never to the output
        assert "print(" not in cell and "display(" not in cell, stem


@pytest.mark.parametrize("stem", sorted(QUESTIONS))
def test_every_finding_an_answer_rests_on_is_made_by_a_finder(stem: str) -> None:
    """A ``{}`` name is a finder's template as it stands; a literal name matches one."""
    finders = all_finders()
    templates = {t for f in finders for t in f.templates}
    for name in QUESTIONS[stem].rests_on:
        if "{}" in name:  # a template, or one with the column filled in (E09)
            assert name in templates or finder_for_name(name.replace("{}", "1"), finders), (
                f"{stem}: no finder makes {name!r}")
        else:
            assert finder_for_name(name, finders), f"{stem}: no finder makes {name!r} (renamed?)"


def test_e02_answer_names_a_client_and_scenario_the_matrix_has() -> None:
    """E02's names are f"{client} / {scenario}...": the scenario part must be one E02 runs."""
    from offsetlab.lab.experiments import e02_errors as e02

    for name in QUESTIONS["02_errors_and_events"].rests_on:
        head, scenario = name.split(" / ")[:2]
        assert head in ("kafka-python", "runner", "runner events"), name
        assert scenario in e02.SCENARIOS, name


# -- NotebookSession.finding / answer ---------------------------------------------------------
@pytest.fixture
def session(tmp_path: Path) -> NotebookSession:
    lab = NotebookSession.__new__(NotebookSession)  # no broker: only the result methods
    lab.name, lab.out, lab.findings, lab.measurements = "03_batch_failure", tmp_path, {}, {}
    lab.finding_details = {}
    return lab


def test_finding_prints_name_value_only_and_keeps_rule_and_measured_apart(
        session: NotebookSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session.record("raw, commit past the failure: messages lost > 0", np.bool_(True))
    session.record("tried >= 3 times", np.int64(5) >= 3, rule="attempts >= 3",
                    measured=np.int64(5))
    session.record("spread", True, measured={"values": [0.5, np.float64(1.5)], "unit": "s"})
    assert capsys.readouterr().out == ("raw, commit past the failure: messages lost > 0: True\n"
                                       "tried >= 3 times: True\nspread: True\n")
    assert json.loads((tmp_path / "findings.json").read_text()) == {
        "raw, commit past the failure: messages lost > 0": True, "tried >= 3 times": True,
        "spread": True}
    assert list(json.loads((tmp_path / "findings.json").read_text()))[0].startswith("raw"), \
        "in the order they were made"
    assert json.loads((tmp_path / "findings_detail.json").read_text()) == {
        "tried >= 3 times": {"rule": "attempts >= 3", "measured": 5, "by": None},
        "spread": {"rule": None, "measured": {"values": [0.5, 1.5], "unit": "s"}, "by": None}}
    session.record("spread", False)  # made again without detail: its old detail goes
    assert "spread" not in json.loads((tmp_path / "findings_detail.json").read_text())


def test_answer_prints_one_line_and_saves_answer_json(
        session: NotebookSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in TYPICAL["03_batch_failure"].items():
        session.record(name, value)
    capsys.readouterr()
    assert session.answer() is None
    assert capsys.readouterr().out == f"answer: {EXPECTED['03_batch_failure']}\n"
    doc = json.loads((tmp_path / "answer.json").read_text())
    assert doc == {"question": QUESTIONS["03_batch_failure"].question,
                   "answer": EXPECTED["03_batch_failure"],
                   "rests_on": {"raw, commit past the failure: messages lost > 0": True,
                                "runner, seed's handler: lost": [],
                                "keys over 3 partitions: stalled partitions": 1}}
    session.answer("08_event_bus_end_to_end")  # another notebook's question, by stem
    assert capsys.readouterr().out == (
        'answer: not measured in this run: "final state fields that differ between the buses" missing\n')
    assert json.loads((tmp_path / "answer.json").read_text())["rests_on"] == {}
