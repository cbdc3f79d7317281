"""The conformance matrix's join/commit/failure finders on hand-made values, each coming out
both ways (no broker)."""

from __future__ import annotations

from offsetlab.lab.clients import conformance_findings_join as ff
from offsetlab.lab.findings import assert_flips, flips


# -- finders --------------------------------------------------------------------------------------
@flips(ff.waits_out_session)
def test_waits_out_session_compares_with_session_minus_gap() -> None:
    assert assert_flips(ff.waits_out_session("kafkajs", 0.4, 15.0, 2.0),
                        ff.waits_out_session("kafkajs", 12.8, 15.0, 2.0)) == (False, True)


def test_waits_out_session_says_when_it_cannot_tell() -> None:
    assert ff.waits_out_session("kafkajs", None, 15.0, 2.0).value == "never joined"
    assert ff.waits_out_session("kafkajs", "failed: MemberTimeout", 15.0, 2.0).value \
        == "failed: MemberTimeout"
    assert str(ff.waits_out_session("kafkajs", 0.3, 15.0, 16.0).value).startswith("not tested")


@flips(ff.static_beats_session)
def test_static_beats_session() -> None:
    assert assert_flips(ff.static_beats_session("kafka-python", 0.3, 15.0, 2.0),
                        ff.static_beats_session("kafka-python", 12.9, 15.0, 2.0)) == (True, False)
    assert ff.static_beats_session("kafkajs", "unsupported", 30.0, 5.0).value == "unsupported"


@flips(ff.first_hold_after_delay)
def test_first_hold_after_delay() -> None:
    assert assert_flips(ff.first_hold_after_delay("c", 3.2, 3.0),
                        ff.first_hold_after_delay("c", 0.4, 3.0)) == (True, False)


@flips(ff.run_returns_after_join)
def test_run_returns_after_join_finder() -> None:
    assert assert_flips(ff.run_returns_after_join("kafkajs", True),
                        ff.run_returns_after_join("kafkajs", False)) == (True, False)


@flips(ff.message_offset_rereads)
def test_message_offset_rereads_finder() -> None:
    assert assert_flips(ff.message_offset_rereads("c", 1, 4, 5),
                        ff.message_offset_rereads("c", 0, 5, 5)) == (True, False)


@flips(ff.idiomatic_rereads_none)
def test_idiomatic_rereads_none_finder() -> None:
    assert assert_flips(ff.idiomatic_rereads_none("c", 0, 5, 5),
                        ff.idiomatic_rereads_none("c", 1, 4, 5)) == (True, False)


@flips(ff.batch_redelivered)
def test_batch_redelivered_finder() -> None:
    assert assert_flips(ff.batch_redelivered("c", ["3"]),
                        ff.batch_redelivered("c", ["5", "3", "4"])) == (["3"], ["3", "4", "5"])


@flips(ff.broker_down_reported)
def test_broker_down_reported_finder() -> None:
    assert assert_flips(ff.broker_down_reported("c", "_TRANSPORT"),
                        ff.broker_down_reported("c", "nothing within 60 s")) == (
        "_TRANSPORT", "nothing within 60 s")


@flips(ff.broker_down_within)
def test_broker_down_within_finder() -> None:
    assert assert_flips(ff.broker_down_within("c", 0.05, 3.0),
                        ff.broker_down_within("c", 9.3, 3.0)) == (True, False)
    assert ff.broker_down_within("c", None, 3.0).value is False
