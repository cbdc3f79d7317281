"""E07's findings on KafkaJS and confluent-kafka that the matrix's liveness finders
(:mod:`offsetlab.lab.clients.conformance_findings_liveness`, which E07 prints as they are)
do not make: whether a KafkaJS member went without a heartbeat for longer than its session
timeout in each case (:func:`offsetlab.lab.experiments.e07_clients.heartbeat_silences`)."""

from __future__ import annotations

from offsetlab.lab.findings import Finding, finder

__all__ = ["kafkajs_silent_past_session"]


@finder("kafkajs, {}: longest time without a heartbeat > session timeout")
def kafkajs_silent_past_session(case: str, silence_s: float | None,
                                session_s: float) -> list[Finding]:
    """True when the KafkaJS member's longest heartbeat silence in ``case`` (from its HEARTBEAT
    and join events) outlasted ``session_s``; no finding when it never joined."""
    if silence_s is None:
        return []
    return [Finding(f"kafkajs, {case}: longest time without a heartbeat > session timeout",
                   silence_s > session_s,
                   rule=f"longest gap between the member's HEARTBEAT/join events, from its first "
                        f"join to its stop, > {session_s:g} s",
                   measured=silence_s)]
