"""Consumer-group members under test, one interface for three clients (the lab's, not the bus's).

A *member* is one consumer of one group, run in its own child process so that it can be
SIGKILLed like a real crashed service and so that three clients can run side by side
without sharing an interpreter:

=================  ==========================================================================
client             child process
=================  ==========================================================================
``kafka-python``   ``python -m offsetlab.lab.clients.pymember`` (kafka-python 3.x)
``confluent-kafka`` the same module with librdkafka underneath; ``group_protocol`` ``classic``
                   or ``consumer`` (Kafka 4's KIP-848 protocol)
``kafkajs``        ``node member.js`` (KafkaJS 2.2.x, installed by ``make setup`` with
                   ``npm ci`` from the committed lock file: :mod:`offsetlab.lab.clients.node`)
=================  ==========================================================================

The parent drives a member through :class:`~offsetlab.lab.clients.child.ChildMember`; the
child speaks the JSON-lines protocol of :mod:`offsetlab.lab.clients.protocol` (its
configuration as the first line on stdin, then commands on stdin; events on stdout, each with
its own wall-clock time). Every event becomes a row of a
:class:`~offsetlab.lab.timeline_core.Timeline`, so one set of plots and findings serves every
client. A child exits when its stdin reaches EOF (the parent died, SIGKILL included) and dies
with its parent's thread through ``PR_SET_PDEATHSIG``.
"""

from offsetlab.lab.clients.protocol import (
                                            CLIENTS,
                                            COMMANDS,
                                            EVENTS,
                                            GROUP_PROTOCOLS,
                                            HandlerSpec,
                                            MemberConfig,
)

__all__ = ["CLIENTS", "COMMANDS", "EVENTS", "GROUP_PROTOCOLS", "HandlerSpec", "MemberConfig"]
