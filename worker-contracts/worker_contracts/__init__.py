"""Message contracts of the worker service, for the worker and for other services.

Light on purpose: importing this package pulls in pydantic and redis only
(no PDF library, no peewee, no Dramatiq), so any service can send messages::

    from worker_contracts import Sender
    Sender(url="redis://127.0.0.1:6379/0").process_asset("a-1", "file:uploads/a-1.pdf")
"""

from worker_contracts.events import InvalidSignature, OutcomeEvent, parse_event, sign, verify_signature
from worker_contracts.payloads import (
    CONTRACT_VERSION,
    CONTRACTS,
    CrmAddNote,
    CrmCreateLead,
    CrmHandleWebhook,
    CrmUpsertContact,
    ExtractKnowledge,
    Payload,
    ProcessAsset,
)
from worker_contracts.sender import (
    InvalidPayload,
    Sender,
    UnknownActor,
    build_message,
    encode,
    validate_payload,
)

__all__ = [
    "CONTRACTS",
    "CONTRACT_VERSION",
    "InvalidSignature",
    "OutcomeEvent",
    "parse_event",
    "sign",
    "verify_signature",
    "CrmAddNote",
    "CrmCreateLead",
    "CrmHandleWebhook",
    "CrmUpsertContact",
    "ExtractKnowledge",
    "InvalidPayload",
    "Payload",
    "ProcessAsset",
    "Sender",
    "UnknownActor",
    "build_message",
    "encode",
    "validate_payload",
]
