"""The actor core: mailboxes, events, the global concurrency limit and supervision."""

from workbench.actors.actor import Actor, ActorCrashed, ActorState, Message, Reply, new_correlation_id
from workbench.actors.events import ActorEvent, EventEmitter
from workbench.actors.limit import ConcurrencyLimit, LimitSnapshot, global_limit
from workbench.actors.supervisor import RestartPolicy, Supervisor

__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorEvent",
    "ActorState",
    "ConcurrencyLimit",
    "EventEmitter",
    "LimitSnapshot",
    "Message",
    "Reply",
    "RestartPolicy",
    "Supervisor",
    "global_limit",
    "new_correlation_id",
]
