"""The seed's questions and the answers the findings give: one line per experiment.

Each experiment (notebook stem) has a :class:`Question`: the seed's question in one line, the
names of the findings the answer rests on, and a small pure function from the findings dict
to a sentence. The sentence is a head clause and at most a few qualifying clauses, each picked
from a few worded outcomes by one or two findings; a value may be quoted (``lost [2]``), never
typed. The wording says what the findings *can* say, whatever they say in a given run.

A finding the answer needs that a run did not record (a skipped part, a Tansu run) gives
``not measured in this run: "<finding>" missing`` for the clause that needs it (for the whole
answer when the head clause does), never an exception.

A name in ``rests_on`` may hold ``{}`` where the notebook's f-string puts a parameter (E03's
``keys over {} partitions: ...``): it stands for the one finding that matches.

``NotebookSession.answer()`` prints ``answer: <text>`` and writes ``answer.json``
(:meth:`Answer.to_json`); the report shows it at the top. ``tests/unit/test_answers.py`` holds
every outcome, and checks that each name below is one a notebook's findings cell records.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from offsetlab.lab.experiments import e07_answer, e08_answer, e09_answer, e10_answer

__all__ = ["QUESTIONS", "Answer", "Question", "answer_for", "experiment_label", "jsonable",
           "question_for"]


class Missing(LookupError):
    """A finding an answer needs was not recorded in this run."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(".+?".join(re.escape(part) for part in name.split("{}")) + r"\Z")


class Findings:
    """Read access to one notebook's findings that raises :class:`Missing`, not KeyError."""

    def __init__(self, findings: Mapping[str, Any]) -> None:
        self._f = dict(findings)

    def resolve(self, name: str) -> str:
        """The recorded name ``name`` stands for (itself, or the match of a ``{}`` pattern)."""
        if "{}" not in name:
            if name not in self._f:
                raise Missing(name)
            return name
        hits = [k for k in self._f if _pattern(name).match(k)]
        if not hits:
            raise Missing(name)
        return hits[0]

    def __getitem__(self, name: str) -> Any:
        return self._f[self.resolve(name)]

    def true(self, name: str) -> bool:
        """A boolean finding (also as read back from JSON, where it may be ``"True"``)."""
        value = self[name]
        return value == "True" if isinstance(value, str) else bool(value)


@dataclass(frozen=True)
class Question:
    stem: str
    question: str
    rests_on: tuple[str, ...]
    decide: Callable[[Findings], str]

    @property
    def experiment(self) -> str:
        return experiment_label(self.stem)


def experiment_label(stem: str) -> str:
    """``01_run_blocking`` -> ``E01`` (the catalogue's name); a stem without a number as is."""
    m = re.match(r"(\d+)_", stem)
    return f"E{int(m.group(1)):02d}" if m else stem


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str
    rests_on: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "rests_on": self.rests_on}


def not_measured(name: str) -> str:
    return f'not measured in this run: "{name}" missing'


def _clause(f: Findings, topic: str, decide: Callable[[Findings], str]) -> str:
    """A qualifying clause; when its finding is missing it says so (under ``topic``)."""
    try:
        return decide(f)
    except Missing as m:
        return f"{topic}: {not_measured(m.name)}"


def _join(head: str, *clauses: str) -> str:
    return "; ".join((head, *clauses))


def _cell(row: str, op: str) -> str:
    """One operation's cell of an E02 matrix row (``op: result | op: result``)."""
    for part in str(row).split(" | "):
        key, _, result = part.partition(": ")
        if key == op:
            return result
    return "-"


def _nonzero(counts: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dict(counts).items() if v}


# -- E01 ------------------------------------------------------------------------------------
E01_RUN = "runner: run() returned within 500 ms of its assignment"
E01_START = "runner: start() returned before the group join"
E01_CONSUMED = "runner: every message consumed exactly once"
E01_DYNAMIC = "dynamic member restarted right after a kill: its join waited for"
E01_STATIC = "static member restarted right after a kill: its join waited for"
E01_KAFKAJS = "kafkajs: a restart after a SIGKILL waits out the dead member's session"


def _e01_restart(f: Findings) -> str:
    dynamic = f[E01_DYNAMIC]
    if dynamic == "the session timeout":
        text = ("a member restarted right after a kill waits until the dead member's session "
                "times out (kafka-python)")
    elif dynamic == "nothing":
        text = "a member restarted right after a kill did not wait for the dead member"
    else:
        text = f"a member restarted right after a kill waited for {dynamic}"
    static = _clause(f, "static membership", lambda f: f[E01_STATIC])
    if static == "nothing":
        return text + "; with a group.instance.id it takes the dead member's place at once"
    if static.startswith("static membership: "):
        return f"{text}; {static}"
    return f"{text}; with a group.instance.id it still waited for {static}"


def _e01(f: Findings) -> str:
    if not f.true(E01_RUN):
        head = "run() did not return within 500 ms of its group join"
    elif f.true(E01_START):
        head = "run() returns once the group join completed, start() at once"
    else:
        head = "run() returns once the group join completed, but start() did not return before it"
    return _join(
        head,
        _clause(f, "consumption", lambda f: "consumption goes on in the background, every message "
                "once" if f.true(E01_CONSUMED) else "not every message was consumed exactly once"),
        _clause(f, "the 21 s", _e01_restart),
        _clause(f, "KafkaJS", _e01_kafkajs))


def _e01_kafkajs(f: Findings) -> str:
    value = f[E01_KAFKAJS]
    if value in (True, "True"):
        return ("on KafkaJS a restarted member waited out the dead member's session too (most "
                "likely where the seed's 21 s went)")
    if value in (False, "False"):
        return "KafkaJS's restarted member did not wait it out"
    return f"KafkaJS: {value}"


# -- E02 ------------------------------------------------------------------------------------
E02_SUCCESS = "runner / success"
E02_INVALID = "runner / invalid topic name"
E02_EVENTS = "runner events / handler raises"
E02_RAW_COMMIT = "kafka-python / handler raises / notes"


def _e02_events(f: Findings) -> str:
    events = list(f[E02_EVENTS])
    if "crash" not in events:
        return "a raising handler produced no crash event"
    if "group_join" in events[events.index("crash"):]:
        return ("after the join, errors surface as lifecycle events: a raising handler is a "
                "crash event, then a restart and a new join")
    return "after the join, a raising handler is a crash event, with no restart"


def _e02(f: Findings) -> str:
    success, invalid = _cell(f[E02_SUCCESS], "start/run"), _cell(f[E02_INVALID], "start/run")
    if not success.startswith("returns GroupJoin"):
        head = f"run() did not return the group join on success (start/run: {success})"
    elif invalid.startswith("raises JoinFailed"):
        # (what KafkaJS's own run() does is measured by the three-clients work, not said here)
        head = "the runner's run() returns the group join or raises JoinFailed when it cannot join"
    else:
        head = (f"run() returns the group join, but an invalid topic name did not make it raise "
                f"JoinFailed (start/run: {invalid})")
    return _join(
        head, _clause(f, "events", _e02_events),
        _clause(f, "raw kafka-python", lambda f: "with raw kafka-python a commit() after a handler "
                "raised moves the position past the failed record"
                if "past the failed record: True" in str(f[E02_RAW_COMMIT])
                else "with raw kafka-python a commit() after a handler raised did not move past "
                     "the failed record"))


# -- E03 ------------------------------------------------------------------------------------
E03_PAST_LOST = "raw, commit past the failure: messages lost > 0"
E03_RUNNER_LOST = "runner, seed's handler: lost"
E03_STALLED = "keys over {} partitions: stalled partitions"


def _e03_stalled(f: Findings) -> str:
    n = int(f[E03_STALLED])
    if n == 1:
        return "a message that keeps failing stalls only its own partition"
    if n == 0:
        return "a message that keeps failing stalled no partition"
    return f"a message that keeps failing stalled {n} partitions"


def _e03(f: Findings) -> str:
    head = ("no: a group commits one position per partition, and committing past the failed "
            "message lost it" if f.true(E03_PAST_LOST)
            else "committing past the failed message lost nothing in this run")
    return _join(
        head,
        _clause(f, "the runner", lambda f: "the runner (contiguous commit, seek back to the "
                "failure) lost nothing with the seed's handler" if not f[E03_RUNNER_LOST]
                else f"the runner lost {f[E03_RUNNER_LOST]} with the seed's handler"),
        _clause(f, "a failing key", _e03_stalled))


# -- E04 ------------------------------------------------------------------------------------
E04_SKIP = "skipping a failure loses it, whatever is committed"
E04_OFFSET = "commit offset: the restart starts at the last message processed before it"
E04_OFFSET1 = "commit offset+1: the restart re-reads nothing it had processed"
E04_RUNNER = "runner, handler raises: lost == 0 and processed twice == 0"
E04_RUNNER_KILL = "runner: nothing processed twice after a handler exception, but after a kill"
E04_MAX_POLL = ("max_poll: only the setting whose batches outlast max_poll_interval_ms got the "
                "member removed")


def _e04_off_by_one(f: Findings) -> str:
    offset, offset1 = f.true(E04_OFFSET), f.true(E04_OFFSET1)
    if offset and offset1:
        return ("committing offset re-processes the last message on every restart, "
                "offset + 1 re-reads nothing")
    if offset:
        return "committing offset re-processes the last message on restart, and offset + 1 " \
               "re-read some too"
    if offset1:
        return ("offset + 1 re-reads nothing, and committing offset did not restart at the last "
                "message processed")
    return "neither offset nor offset + 1 restarted where expected"


def _e04(f: Findings) -> str:
    head = ("a message skipped after a failure is lost whether offset or offset + 1 is committed"
            if f.true(E04_SKIP) else "skipping a failure did not lose it in every commit mode")
    return _join(
        head, _clause(f, "the off-by-one", _e04_off_by_one),
        _clause(f, "the runner", lambda f: "the runner (offset + 1 of what is done, stop at the "
                "failure) lost and repeated nothing after a handler exception" if f.true(E04_RUNNER)
                else "the runner lost or repeated a message after a handler exception"),
        _clause(f, "a kill", lambda f: "a consumer killed between processing and commit has "
                "its restart process again what was not committed (the runner too)"
                if f.true(E04_RUNNER_KILL)
                else "the runner's kill case did not differ from its exception case"),
        _clause(f, "max poll", _e04_max_poll))


def _e04_max_poll(f: Findings) -> str:
    if str(f[E04_MAX_POLL]).startswith("not read"):
        return "whether a long poll batch got the member removed was not read (no broker log)"
    if f.true(E04_MAX_POLL):
        return ("a poll batch that took longer than max_poll_interval_ms got the member removed "
                "(the broker's log) and its records handled again, a shorter one did not")
    return "the member's removal did not follow the batch time against max_poll_interval_ms"


# -- E05 ------------------------------------------------------------------------------------
E05_TRANSIENT = "bus transient: [lost, duplicated, dead-lettered]"
E05_POISON = "raw poison: dead-lettered"
E05_ORDER = "raw transient: processing order"
E05_CRASH_OFFSET = "raw crash, offset: [lost, duplicated]"
E05_THROUGHPUT = "outage: healthy throughput during it, retry topic / main topic >= 1.25"
E05_WINDOW = "copy-then-commit window, {}: message 2 processed [no kill, killed]"


def _e05_window(f: Findings) -> str:
    modes = [m for m in ("raw", "bus") if (v := f[E05_WINDOW.format(m)]) and int(v[1]) > int(v[0])]
    return (f"a consumer killed after its copy was acknowledged and before its commit left a "
            f"second copy: the message was processed twice ({', '.join(modes)})" if modes else
            "a kill between the copy's acknowledgement and the commit duplicated nothing")


def _e05(f: Findings) -> str:
    lost, duplicated, _ = f[E05_TRANSIENT]
    if lost or duplicated:
        head = (f"no: re-producing a failed message to the main topic lost {list(lost)} and "
                f"processed twice {list(duplicated)}")
    else:
        head = "yes: re-producing a failed message and committing offset + 1 loses nothing"
    return _join(
        head,
        _clause(f, "poison", lambda f: "a poison message is dead-lettered"
                if f[E05_POISON] else "a poison message was not dead-lettered"),
        _clause(f, "order", lambda f: "the copy is processed after later messages (order is lost)"
                if list(f[E05_ORDER]) != sorted(f[E05_ORDER])
                else "the retried message kept its place in the order"),
        _clause(f, "crash path", lambda f: "on a crash, committing offset instead re-processes "
                "a record" if f[E05_CRASH_OFFSET][1]
                else "on a crash, committing offset re-processed nothing"),
        _clause(f, "outage", lambda f: "in an outage it holds healthy keys back (a retry "
                "topic kept >= 1.25x their throughput)" if f.true(E05_THROUGHPUT)
                else "in an outage a retry topic did not keep healthy keys 1.25x faster"),
        _clause(f, "copy-then-commit window", _e05_window))


# -- E06 ------------------------------------------------------------------------------------
E06_THROUGHPUT = E05_THROUGHPUT  # the shared outage (lab.experiments.outage) finds it for both
E06_LOST = "outage: lost per pipeline"
E06_RAW_FAILED = "outage: raw retriers' retries that failed during the outage [process, move-back]"
E06_BUS_FAILED = "outage: bus-retry-topic retries that failed during the outage >= 1"
E06_ORDER = "outage: retry topics processed some key out of order [raw, bus]"
E06_BREAKER = ("outage: the same probe, healthy throughput during it, raw retrier / bus with "
               "breaker >= 2")


def _e06_retries(f: Findings) -> str:
    raw = [int(n) for n in f[E06_RAW_FAILED]]
    if any(raw):
        return f"even the retrier that waits spent retries on the outage {raw}"
    if f.true(E06_BUS_FAILED):
        return ("a retrier that waits for the dependency spent no retry on the outage, while the "
                "bus's clock-driven retries did")
    return "neither the waiting retrier nor the bus spent a retry on the outage"


def _e06(f: Findings) -> str:
    head = ("yes: with a retry topic healthy keys kept >= 1.25x the main topic's throughput during "
            "the outage" if f.true(E06_THROUGHPUT) else "a retry topic did not keep healthy keys "
            ">= 1.25x the main topic's throughput during the outage")
    return _join(
        head,
        _clause(f, "loss", lambda f: "no pipeline lost an item" if not _nonzero(f[E06_LOST])
                else f"items were lost {_nonzero(f[E06_LOST])}"),
        _clause(f, "retries", _e06_retries),
        _clause(f, "breaker", lambda f: "the bus waiting on the same probe through a circuit "
                "breaker paused the main topic too (the raw retrier kept >= 2x its healthy "
                "throughput)" if f.true(E06_BREAKER) else "the bus's circuit breaker, on the "
                "same probe, kept healthy keys within 2x of the raw retrier"),
        _clause(f, "order", lambda f: "the price: a key's later messages overtake its retried ones"
                if any(f[E06_ORDER]) else "per-key order was kept"))


# -- E07: offsetlab.lab.experiments.e07_answer (beside E07's finders) -----------------------


# -- E08, E09: offsetlab.lab.experiments.e08_answer, e09_answer ----------------------------
E08_DIFFER, E08_PENDING, E08_OPEN_CALLS = (e08_answer.E08_DIFFER, e08_answer.E08_PENDING,
                                           e08_answer.E08_OPEN_CALLS)


QUESTIONS: dict[str, Question] = {q.stem: q for q in (
    Question("01_run_blocking", "Does run() block? Where did the seed's 21 s group join go?",
             (E01_RUN, E01_START, E01_CONSUMED, E01_DYNAMIC, E01_STATIC, E01_KAFKAJS), _e01),
    Question("02_errors_and_events", "What do the calls return, and how do errors surface?",
             (E02_SUCCESS, E02_INVALID, E02_EVENTS, E02_RAW_COMMIT), _e02),
    Question("03_batch_failure", "Message 3 of a batch fails: can only 3 be left behind?",
             (E03_PAST_LOST, E03_RUNNER_LOST, E03_STALLED), _e03),
    Question("04_manual_commit_loss", "Commit per message: why is a failed message lost, and "
             "is it offset or offset + 1?",
             (E04_SKIP, E04_OFFSET, E04_OFFSET1, E04_RUNNER, E04_RUNNER_KILL, E04_MAX_POLL), _e04),
    Question("05_main_topic_retry", "Can the main topic be its own retry queue (fail03), and "
             "what does its crash path do?",
             (E05_TRANSIENT, E05_POISON, E05_ORDER, E05_CRASH_OFFSET, E05_THROUGHPUT,
              E05_WINDOW.format("raw"), E05_WINDOW.format("bus")), _e05),
    Question("06_retry_topic", "Does a retry topic keep messages flowing while a dependency is "
             "down, where the main topic blocks?",
             (E06_THROUGHPUT, E06_LOST, E06_RAW_FAILED, E06_BUS_FAILED, E06_BREAKER, E06_ORDER),
             _e06),
    Question("07_pause_on_dependency", "Can a consumer pause while a dependency is down, longer "
             "than the session timeout, without leaving its group?", e07_answer.RESTS_ON,
             e07_answer.answer),
    Question("08_event_bus_end_to_end", "Can the seed's service keep its shape on Kafka: the "
             "same end state as on the in-memory bus?",
             e08_answer.RESTS_ON, e08_answer.answer),
    Question("09_client_conformance", "Do KafkaJS, confluent-kafka and kafka-python behave the "
             "same in a consumer group?", e09_answer.RESTS_ON, e09_answer.answer),
    Question("10_cluster_failover", "When a partition's leader dies, what do acks=all and acks=1 "
             "producers and a consumer group with a retry in flight see?", e10_answer.RESTS_ON,
             e10_answer.answer),
)}


def question_for(stem: str) -> Question | None:
    return QUESTIONS.get(stem)


def answer_for(stem: str, findings: Mapping[str, Any]) -> Answer:
    """The answer ``findings`` give to ``stem``'s question. Raises KeyError for a stem with
    no question; a missing finding is said in the answer, not raised."""
    if stem not in QUESTIONS:
        raise KeyError(f"no question for {stem!r} in offsetlab.lab.answers.QUESTIONS")
    q = QUESTIONS[stem]
    f = Findings(findings)
    try:
        text = q.decide(f)
    except Missing as m:
        text = not_measured(m.name)
    rests_on = {}
    for name in q.rests_on:
        try:
            resolved = f.resolve(name)
        except Missing:
            continue
        rests_on[resolved] = jsonable(findings[resolved])
    return Answer(question=q.question, answer=text, rests_on=rests_on)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: numpy scalars and arrays, pandas objects, tuples and sets
    become Python numbers, booleans and lists; anything else unknown becomes its ``str``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    for attr in ("to_dict", "tolist", "item"):  # pandas object, numpy array or scalar
        fn = getattr(value, attr, None)
        if callable(fn):
            try:
                return jsonable(fn())
            except (TypeError, ValueError):
                continue
    return str(value)
