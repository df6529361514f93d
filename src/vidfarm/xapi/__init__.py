"""xAPI: player events become Video Profile statements, kept in an SQL outbox, sent to an LRS."""

from vidfarm.xapi.delivery import XapiDelivery
from vidfarm.xapi.outbox import outbox_status
from vidfarm.xapi.statements import ActorPolicy, Viewer, build_statement, validate_event

__all__ = [
    "ActorPolicy",
    "Viewer",
    "XapiDelivery",
    "build_statement",
    "outbox_status",
    "validate_event",
]
