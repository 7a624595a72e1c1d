"""Payload validation on the worker side (the sender validated already; foreign senders may not have).

Hook: ``before_process_message``.  Each actor's payload model comes from
``contracts.CONTRACTS``; payloads travel in kwargs only.  An invalid payload
is a permanent failure: the message is failed with dead-letter type
``invalid_payload`` and the validation text, never retried, and the actor
does not run.  No actor options.
"""

from __future__ import annotations

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from contracts.payloads import CONTRACTS
from contracts.sender import InvalidPayload as SenderInvalidPayload
from contracts.sender import validate_payload
from errors import InvalidPayload
from outcome import Dead, kill


class Validation(Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if message.actor_name not in CONTRACTS:
            return
        try:
            if message.args:
                raise SenderInvalidPayload(message.actor_name, "positional args are not accepted; use kwargs")
            validate_payload(message.actor_name, message.kwargs)
        except SenderInvalidPayload as exc:
            kill(message, Dead.of("invalid_payload", InvalidPayload(exc.reason)))
            raise SkipMessage(exc.reason) from None
