"""Provenance headers: Spring's names and encodings, kept and replaced, round trips."""

from __future__ import annotations

import pytest
from offsetlab.bus.errors import MalformedHeaders
from offsetlab.bus.headers import (
    ATTEMPT,
    EXCEPTION_CAUSE_FQCN,
    EXCEPTION_FQCN,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    NOT_BEFORE,
    ORIGINAL_CONSUMER_GROUP,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TIMESTAMP,
    ORIGINAL_TIMESTAMP_TYPE,
    ORIGINAL_TOPIC,
    REASON,
    SourceRecord,
    attempt_of,
    delivery_of,
    failure_headers,
    is_copy_for,
    not_before_of,
    original_topic_of,
    parse_provenance,
)

SRC = SourceRecord(topic="orders", partition=2, offset=41, timestamp_ms=1_767_225_600_123,
                   timestamp_type="CreateTime")
OWN = (("offsetlab-event-type", b"OrderPlaced"), ("trace-id", b"abc"))


def _error() -> Exception:
    try:
        try:
            raise ConnectionRefusedError("port 5432")
        except ConnectionRefusedError as cause:
            raise TimeoutError("db slow") from cause
    except TimeoutError as exc:
        return exc
    raise AssertionError


def test_spring_names_and_binary_encodings() -> None:
    hs = dict(failure_headers(OWN, source=SRC, group="billing", attempt=2, reason="retry: x",
                              error=_error(), not_before=1_767_225_601.5))
    assert hs[ORIGINAL_TOPIC] == b"orders"
    assert hs[ORIGINAL_PARTITION] == (2).to_bytes(4, "big", signed=True)
    assert hs[ORIGINAL_OFFSET] == (41).to_bytes(8, "big", signed=True)
    assert hs[ORIGINAL_TIMESTAMP] == (1_767_225_600_123).to_bytes(8, "big", signed=True)
    assert hs[ORIGINAL_TIMESTAMP_TYPE] == b"CreateTime"
    assert hs[ORIGINAL_CONSUMER_GROUP] == b"billing"
    assert hs[EXCEPTION_FQCN] == b"builtins.TimeoutError"
    assert hs[EXCEPTION_CAUSE_FQCN] == b"builtins.ConnectionRefusedError"
    assert hs[EXCEPTION_MESSAGE] == b"db slow"
    assert hs[ATTEMPT] == (2).to_bytes(4, "big")
    assert hs[NOT_BEFORE] == (1_767_225_601_500).to_bytes(8, "big")
    assert hs[REASON] == b"retry: x"
    assert EXCEPTION_STACKTRACE not in hs
    assert hs["trace-id"] == b"abc" and hs["offsetlab-event-type"] == b"OrderPlaced"


def test_round_trip_through_parse() -> None:
    hs = failure_headers(OWN, source=SRC, group="billing", attempt=3, reason="fatal: v",
                         error=ValueError("amount"), include_stacktrace=True)
    p = parse_provenance(hs)
    assert (p.original_topic, p.original_partition, p.original_offset) == ("orders", 2, 41)
    assert p.original_timestamp_ms == SRC.timestamp_ms and p.original_timestamp_type == "CreateTime"
    assert p.original_consumer_group == "billing" and p.attempt == 3
    assert p.exception_fqcn == "builtins.ValueError" and p.exception_message == "amount"
    assert p.exception_cause_fqcn is None and p.not_before_ms is None
    assert p.exception_stacktrace is not None and "ValueError: amount" in p.exception_stacktrace
    assert p.reason == "fatal: v"


def test_second_failure_keeps_first_origin_and_replaces_exception_headers() -> None:
    first = failure_headers(OWN, source=SRC, group="billing", attempt=2, reason="r1",
                            error=TimeoutError("one"), not_before=10.0)
    retry_src = SourceRecord(topic="orders-retry", partition=0, offset=7)
    second = failure_headers(first, source=retry_src, group="billing", attempt=3, reason="r2",
                             error=ConnectionError("two"))
    names = [k for k, _ in second]
    for name in (ORIGINAL_TOPIC, ORIGINAL_OFFSET, EXCEPTION_FQCN, EXCEPTION_MESSAGE, ATTEMPT,
                 REASON):
        assert names.count(name) == 1, name
    assert NOT_BEFORE not in names  # replaced by nothing: this copy has no due time
    p = parse_provenance(second)
    assert (p.original_topic, p.original_offset, p.attempt) == ("orders", 41, 3)
    assert p.exception_fqcn == "builtins.ConnectionError" and p.reason == "r2"
    assert original_topic_of(second, default="x") == "orders"
    assert len(second) == len(first) - 1  # no growth (one fewer: not-before dropped)


def test_helpers_on_plain_records() -> None:
    assert attempt_of(OWN) == 1 and not_before_of(OWN) is None
    assert original_topic_of(OWN, default="orders") == "orders"
    assert is_copy_for(OWN, "anyone")
    copy = failure_headers(OWN, source=SRC, group="billing", attempt=2, reason="r",
                           not_before=12.25)
    assert attempt_of(copy) == 2 and not_before_of(copy) == 12.25
    assert is_copy_for(copy, "billing") and not is_copy_for(copy, "shipping")


@pytest.mark.parametrize("headers", [
    ((ORIGINAL_PARTITION, b"\x00\x00\x01"),),
    ((ATTEMPT, b"\x00\x00\x00\x00"),),
    ((NOT_BEFORE, b"\x01"),),
    ((ORIGINAL_TOPIC, b"\xff\xfe"),),
])
def test_malformed_headers_raise(headers) -> None:
    with pytest.raises(MalformedHeaders):
        parse_provenance(headers)


def test_attempt_header_of_wrong_size_is_reported_by_attempt_of() -> None:
    with pytest.raises(MalformedHeaders, match="4 bytes"):
        attempt_of(((ATTEMPT, b"2"),))
    with pytest.raises(ValueError):
        failure_headers(OWN, source=SRC, group=None, attempt=0, reason="r")


def _four_readers(headers, group: str, topic: str):
    """What ``process_record`` reads with the four helpers, stopping at the first error."""
    not_before, attempt, origin = None, 1, topic
    try:
        if not is_copy_for(headers, group):
            return (False, None, 1, topic, None)
        not_before = not_before_of(headers)
        attempt = attempt_of(headers)
        origin = original_topic_of(headers, default=topic)
    except MalformedHeaders as exc:
        return (True, not_before, attempt, topic, type(exc))
    return (True, not_before, attempt, origin, None)


_COPY = failure_headers(OWN, source=SRC, group="billing", attempt=3, reason="r", not_before=7.5)


@pytest.mark.parametrize("headers", [
    None, (), OWN, list(OWN), _COPY, list(_COPY),
    ((ATTEMPT, b"\x00\x00\x00\x02"), (ATTEMPT, b"\x00\x00\x00\x05")),  # the last one wins
    ((ORIGINAL_CONSUMER_GROUP, None),),  # a header without a value counts as absent
    ((ORIGINAL_CONSUMER_GROUP, b"\xff"),),  # malformed: nothing else read
    ((NOT_BEFORE, b"\x00" * 7 + b"\x10"), (ATTEMPT, b"\x02")),  # not-before kept, attempt 1
    ((NOT_BEFORE, b"\x00" * 7 + b"\x10"), (ATTEMPT, b"\x00\x00\x00\x02"),
     (ORIGINAL_TOPIC, b"\xff\xfe")),  # origin malformed: the rest kept
], ids=["none", "empty", "own", "own-list", "copy", "copy-list", "two-attempts",
        "group-none", "group-bad", "attempt-bad", "origin-bad"])
@pytest.mark.parametrize("group", ["billing", "shipping"])
def test_delivery_of_reads_what_the_four_readers_read(headers, group: str) -> None:
    d = delivery_of(headers, group, "orders-retry")
    expected = _four_readers(headers or (), group, "orders-retry")
    got = (d.for_group, d.not_before, d.attempt, d.origin,
           None if d.error is None else type(d.error))
    assert got == expected


def test_delivery_of_a_generator_of_headers() -> None:
    d = delivery_of(iter(_COPY), "billing", "x")
    assert (d.for_group, d.attempt, d.origin, d.not_before) == (True, 3, "orders", 7.5)
