"""The chaos run's seeded choices and its option checks (``offsetlab.lab.chaos_choice``,
``ChaosConfig``, the ``offsetlab chaos`` parser)."""

from __future__ import annotations

import argparse

import pytest
from offsetlab.bus.errors import ConfigError
from offsetlab.bus.retry import InPlaceRetry, MainTopicRetry, RetryTopicRetry
from offsetlab.lab.chaos import add_arguments, config_of
from offsetlab.lab.chaos_choice import (
    FailureDice,
    max_retries_for,
    poison_seqs,
    retry_strategy,
)
from offsetlab.lab.chaos_config import ChaosConfig


def test_poison_is_the_same_for_a_seed_and_differs_between_seeds() -> None:
    a, b = poison_seqs(3, 10_000, 20), poison_seqs(3, 10_000, 20)
    assert a == b and len(a) == 20 and all(0 <= s < 10_000 for s in a)
    assert poison_seqs(4, 10_000, 20) != a
    assert poison_seqs(3, 10, 0) == frozenset()
    with pytest.raises(ValueError):
        poison_seqs(3, 10, 11)


def test_failure_dice_per_slot_are_seeded_and_hit_about_the_rate() -> None:
    one, again, other = FailureDice(3, 0, 0.05), FailureDice(3, 0, 0.05), FailureDice(3, 1, 0.05)
    seq_one = [one.fails() for _ in range(20_000)]
    assert seq_one == [again.fails() for _ in range(20_000)]
    assert seq_one != [other.fails() for _ in range(20_000)]
    assert 0.04 < sum(seq_one) / len(seq_one) < 0.06
    assert not any(FailureDice(3, 0, 0.0).fails() for _ in range(1000))


def test_max_retries_makes_exhaustion_negligible() -> None:
    m = max_retries_for(0.05, 10_000)
    assert 0.05 ** (m + 1) * 10_000 <= 1e-3 < 0.05 ** m * 10_000
    assert max_retries_for(0.0, 10_000) == 3
    assert max_retries_for(0.5, 10_000) > max_retries_for(0.05, 10_000)


def test_retry_names_make_their_strategies() -> None:
    assert isinstance(retry_strategy("in-place", 0.05, 100), InPlaceRetry)
    assert isinstance(retry_strategy("main-topic", 0.05, 100), MainTopicRetry)
    rt = retry_strategy("retry-topic", 0.05, 100)
    assert isinstance(rt, RetryTopicRetry) and rt.backoff.max_s <= 0.5
    with pytest.raises(ValueError):
        retry_strategy("nowhere", 0.05, 100)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_acceptance_options_parse_into_a_config() -> None:
    config = config_of(_parse("--events", "10000", "--kills", "5", "--nodes", "3",
                              "--broker-kills", "2", "--fail-rate", "0.05", "--poison", "20",
                              "--retry", "retry-topic", "--seed", "3", "--sink", "topic",
                              "--consumer", "bus-eos"))
    assert (config.nodes, config.broker_kills, config.fail_rate, config.poison, config.retry,
            config.sink, config.consumer) == (3, 2, 0.05, 20, "retry-topic", "topic", "bus-eos")
    assert not config.allow_unacked and config_of(_parse("--allow-unacked")).allow_unacked


@pytest.mark.parametrize("changes, words", [
    (dict(broker_kills=1), "needs a cluster"),
    (dict(nodes=2), "nodes=2"),
    (dict(fail_rate=0.9), "fail_rate"),
    (dict(fail_rate=-0.1), "fail_rate"),
    (dict(poison=11, events=10), "more than --events"),
    (dict(sink="topic", consumer="raw"), "needs a bus consumer"),
    (dict(consumer="bus-eos", client="confluent-kafka"), "kafka-python only"),
    (dict(retry="later"), "retry"),
    (dict(sink="nowhere"), "sink"),
])
def test_bad_combinations_are_usage_errors(changes: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ChaosConfig(**changes)  # type: ignore[arg-type]


def test_good_combinations_pass() -> None:
    assert ChaosConfig(nodes=3, broker_kills=2, fail_rate=0.5, poison=20, sink="topic",
                       consumer="bus-eos").handler_faults
    ChaosConfig(consumer="raw", sink="file")


def test_the_unsafe_and_raw_consumers_ignore_the_handler_faults() -> None:
    """The acceptance command with only ``--consumer unsafe`` changed runs (the negative
    control); its handlers neither fail nor reject."""
    assert not ChaosConfig(consumer="unsafe", fail_rate=0.05, poison=20).handler_faults
    assert not ChaosConfig(consumer="raw", fail_rate=0.05).handler_faults


def test_the_publishing_window_makes_room_for_a_cluster_s_faults() -> None:
    assert ChaosConfig().window_s == 30.0
    assert ChaosConfig(nodes=3, broker_kills=2, broker_restarts=1).window_s == 60.0
    assert ChaosConfig(nodes=3, broker_kills=2, publish_s=12).window_s == 12.0
    assert ChaosConfig(nodes=1, broker_restarts=5).window_s == 30.0
