"""Payload validation on the worker side (the sender validated already; foreign senders may not have).

Hook: ``before_process_message``.  Each actor's payload model comes from
``worker_contracts.CONTRACTS``; payloads travel in kwargs only.  An invalid payload
is a permanent failure: the message is failed with dead-letter type
``invalid_payload`` and the validation text, never retried, and the actor
does not run.  Versions: ``options["contract_version"]`` (``1.0`` when absent) of
another major is refused with that reason; optional fields of a newer minor
version are left out of the kwargs before the actor runs (a rolling deploy:
senders upgraded before workers).  No actor options.
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage
from worker_contracts.payloads import CONTRACT_VERSION, CONTRACTS
from worker_contracts.sender import InvalidPayload as SenderInvalidPayload
from worker_contracts.sender import validate_payload

from worker_service.errors import InvalidPayload
from worker_service.outcome import Dead, kill

logger = logging.getLogger(__name__)


class Validation(Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if message.actor_name not in CONTRACTS:
            return
        version = str(message.options.get("contract_version") or "1.0")  # senders before 1.1 did not say
        try:
            if message.args:
                raise SenderInvalidPayload(message.actor_name, "positional args are not accepted; use kwargs")
            if not isinstance(message.kwargs, dict):
                raise SenderInvalidPayload(message.actor_name, "kwargs must be a JSON object")
            validate_payload(message.actor_name, message.kwargs, sent_version=version)
        except SenderInvalidPayload as exc:
            kill(message, Dead.of("invalid_payload", InvalidPayload(exc.reason)))
            raise SkipMessage(exc.reason) from None
        newer = sorted(k for k in message.kwargs if k not in CONTRACTS[message.actor_name][1].model_fields)
        if (
            newer
        ):  # optional fields of a newer minor version: this worker does not know them, the actor neither
            for name in newer:
                del message.kwargs[name]
            logger.info(
                "Message %s (contract %s) carries %s, unknown to contract %s: left out.",
                message.message_id,
                version,
                ", ".join(newer),
                CONTRACT_VERSION,
            )
