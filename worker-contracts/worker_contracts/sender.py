"""Send messages to the worker from any Python service, with pydantic and redis only.

The wire format is Dramatiq's (see docs/contracts.rst, "Message format"): a JSON object
stored in the hash ``<ns>:<queue>.msgs`` under a fresh Redis id that is then
pushed onto the list ``<ns>:<queue>``, both in one MULTI/EXEC.  Payloads are
validated before anything is written: an invalid payload raises
:class:`InvalidPayload` and nothing is enqueued.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis
from pydantic import ValidationError

from worker_contracts.payloads import CONTRACT_VERSION, CONTRACTS, Payload

DEFAULT_NAMESPACE = "dramatiq"

logger = logging.getLogger("worker_contracts.sender")


class InvalidPayload(ValueError):
    """The payload does not match the actor's contract; ``reason`` says why."""

    def __init__(self, actor: str, reason: str) -> None:
        super().__init__(f"invalid payload for {actor}: {reason}")
        self.actor = actor
        self.reason = reason


class UnknownActor(ValueError):
    pass


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "payload"
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts)


def parse_version(version: Any) -> tuple[int, int]:
    """``"1.1"`` -> ``(1, 1)``; raises ValueError for anything else."""
    major, _, minor = str(version).partition(".")
    return int(major), int(minor or 0)


def validate_payload(
    actor: str, payload: Mapping[str, Any] | Payload, *, sent_version: str | None = None
) -> dict[str, Any]:
    """Return the payload as plain kwargs (unset optionals dropped), or raise InvalidPayload.

    ``sent_version``: the sender's contract version (a worker validating a message).  Another major is
    refused; a newer minor may carry optional fields this version does not know: they are left out (a
    sender upgraded before the workers, in a rolling deploy), where a sender of this version is refused
    any unknown field (a typo).
    """
    if actor not in CONTRACTS:
        raise UnknownActor(f"unknown actor {actor!r}; known: {', '.join(sorted(CONTRACTS))}")
    _queue, model = CONTRACTS[actor]
    if isinstance(payload, Payload):
        if not isinstance(payload, model):
            raise InvalidPayload(actor, f"expected {model.__name__}, got {type(payload).__name__}")
        return payload.model_dump(mode="json", exclude_none=True)
    if not isinstance(payload, Mapping):
        raise InvalidPayload(actor, "payload must be a JSON object")
    data = dict(payload)
    if sent_version is not None:
        ours = parse_version(CONTRACT_VERSION)
        try:
            theirs = parse_version(sent_version)
        except ValueError:
            raise InvalidPayload(actor, f"contract_version {sent_version!r} is not MAJOR.MINOR") from None
        if theirs[0] != ours[0]:
            raise InvalidPayload(
                actor,
                f"contract version {sent_version} is not understood by this worker "
                f"(it knows {ours[0]}.0 to {CONTRACT_VERSION})",
            )
        if theirs > ours:
            data = {k: v for k, v in data.items() if k in model.model_fields}
    try:
        return model.model_validate(data).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        raise InvalidPayload(actor, describe_validation_error(exc)) from None


def uuid4_strings(count: int) -> list[str]:
    """``count`` random (version 4) UUID strings from one urandom call: bulk sends make two per message."""
    raw = bytearray(os.urandom(16 * count))
    out = []
    for i in range(0, 16 * count, 16):
        raw[i + 6] = (raw[i + 6] & 0x0F) | 0x40
        raw[i + 8] = (raw[i + 8] & 0x3F) | 0x80
        h = raw[i : i + 16].hex()
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def build_message(
    actor: str,
    kwargs: dict[str, Any],
    options: Mapping[str, Any] | None = None,
    *,
    message_id: str | None = None,
) -> dict[str, Any]:
    """A Dramatiq message dict for an already-validated payload."""
    queue, _model = CONTRACTS[actor]
    return {
        "queue_name": queue,
        "actor_name": actor,
        "args": [],
        "kwargs": kwargs,
        "options": {"contract_version": CONTRACT_VERSION, **(options or {})},
        "message_id": message_id or str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }


def encode(message: Mapping[str, Any]) -> bytes:
    # Byte-for-byte what dramatiq.encoder.JSONEncoder produces.
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


@contextmanager
def _send_span(queue: str, actor: str, count: int, options: dict[str, Any]) -> Iterator[None]:
    """A PRODUCER span ``send <queue>`` (one per batch) whose W3C context travels in the message options."""
    try:
        from opentelemetry import propagate, trace
    except ImportError:  # the sender works without OpenTelemetry
        yield
        return
    tracer = trace.get_tracer("worker.contracts")
    with tracer.start_as_current_span(
        f"send {queue}",
        kind=trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "dramatiq",
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            "messaging.destination.name": queue,
            "messaging.batch.message_count": count,
            "dramatiq.actor": actor,
        },
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier:
            options.setdefault("trace_context", carrier)
        yield


#: how many times one chunk is sent again after it landed on a demoted master (Sender, ``wait_replicas``)
DEMOTED_RESENDS = 2


class Sender:
    """Validated sends to the worker's Redis broker.

    Parameters:
      client: a ``redis.Redis`` client, or ``url`` to build one (``redis://``, ``rediss://`` or a Sentinel
        deployment's ``redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]``).
      namespace: the Dramatiq key namespace (``dramatiq``).
      wait_replicas: after each chunk, ``WAIT`` on the connection that wrote it until this many replicas have it
        (the worker's REDIS_WAIT_REPLICAS; 0, the default: asynchronous replication, no wait).  When fewer
        replicas confirm within ``wait_timeout_ms``, the server is asked whether it is still the master (``ROLE``,
        and the sentinels of a ``redis+sentinel://`` URL): a server demoted meanwhile discards the chunk when it
        resyncs, so the chunk is sent again to the new master (receivers deduplicate by asset; at most
        DEMOTED_RESENDS times); on a master that is still one the send succeeds with a warning (re-sending
        would only duplicate), and ``last_replicas`` says how many confirmed.
      wait_timeout_ms: how long ``WAIT`` may block (the worker's REDIS_WAIT_TIMEOUT_MS).
    """

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        url: str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        if wait_replicas < 0 or wait_timeout_ms < 0:
            raise ValueError("wait_replicas and wait_timeout_ms must be >= 0")
        if client is None:
            if url is None:
                raise ValueError("Sender needs a redis client or url")
            from worker_contracts.redis_urls import redis_client

            client = redis_client(url, socket_timeout=10, socket_connect_timeout=5)
        self.client = client
        self.namespace = namespace
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.last_replicas: int | None = None

    def send(
        self,
        actor: str,
        payload: Mapping[str, Any] | Payload | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> str:
        """Validate and enqueue one message; returns its message_id."""
        return self.send_many(actor, [payload if payload is not None else kwargs], options=options)[0]

    def send_many(
        self,
        actor: str,
        payloads: Iterable[Mapping[str, Any] | Payload],
        *,
        options: Mapping[str, Any] | None = None,
        chunk_size: int = 1000,
    ) -> list[str]:
        """Validate every payload first, then enqueue them pipelined; all-or-nothing per chunk."""
        if actor not in CONTRACTS:
            raise UnknownActor(f"unknown actor {actor!r}; known: {', '.join(sorted(CONTRACTS))}")
        validated = [validate_payload(actor, payload) for payload in payloads]
        base_options = dict(options or {})
        with _send_span(CONTRACTS[actor][0], actor, len(validated), base_options):
            ids = uuid4_strings(len(validated))
            messages = [
                build_message(actor, kwargs, base_options, message_id=message_id)
                for kwargs, message_id in zip(validated, ids, strict=True)
            ]
            return self._push(messages, chunk_size)

    def _push(self, messages: list[dict[str, Any]], chunk_size: int) -> list[str]:
        """One HSET of all payloads and one RPUSH of all ids per chunk, in MULTI/EXEC (same queue order).

        With ``wait_replicas`` the MULTI/EXEC and the WAIT go in one pipeline, so the WAIT runs on the connection
        that wrote the chunk (a WAIT inside MULTI returns at once, without waiting: measured).
        """
        ids: list[str] = []
        for start in range(0, len(messages), chunk_size):
            chunk = messages[start : start + chunk_size]
            queue = chunk[0]["queue_name"]
            payloads: dict[Any, Any] = {}
            for message, redis_id in zip(chunk, uuid4_strings(len(chunk)), strict=True):
                message["options"] = {**message["options"], "redis_message_id": redis_id}
                payloads[redis_id] = encode(message)
            self._push_chunk(queue, payloads)
            ids.extend(m["message_id"] for m in chunk)
        return ids

    def _push_chunk(self, queue: str, payloads: dict[Any, Any]) -> None:
        """One chunk.  A refusal (``NOREPLICAS`` from a master short of ``min-replicas-to-write`` replicas) is
        raised: nothing was written, the caller sends again; ``READONLY`` from a demoted master makes redis-py's
        Sentinel connection ask the sentinels again and retry."""
        if self.wait_replicas:
            self._push_replicated(queue, payloads)
            return
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(f"{self.namespace}:{queue}.msgs", mapping=payloads)
        pipe.rpush(f"{self.namespace}:{queue}", *payloads)
        pipe.execute()

    def _push_replicated(self, queue: str, payloads: dict[Any, Any]) -> None:
        for resends in range(DEMOTED_RESENDS + 1):
            acked, role = self._write_and_wait(queue, payloads)
            self.last_replicas = acked
            if acked >= self.wait_replicas:
                return
            demoted = self._demoted(role)
            if not demoted or resends == DEMOTED_RESENDS:
                break
            logger.warning(
                "%d message(s) for %s reached %d of %d replica(s) on a Redis that is no longer the master "
                "(%s): it discards them when it resyncs; sending them again to the new master",
                len(payloads),
                queue,
                acked,
                self.wait_replicas,
                demoted,
            )
        logger.warning(
            "%d message(s) for %s reached %d of %d replica(s) within %d ms: enqueued on the master, "
            "at risk if it fails now",
            len(payloads),
            queue,
            self.last_replicas,
            self.wait_replicas,
            self.wait_timeout_ms,
        )

    def _write_and_wait(self, queue: str, payloads: dict[Any, Any]) -> tuple[int, Any]:
        """The chunk in MULTI/EXEC, then WAIT and ROLE on the same connection: (replicas that have it, role)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command("MULTI")
        pipe.execute_command(
            "HSET", f"{self.namespace}:{queue}.msgs", *(x for kv in payloads.items() for x in kv)
        )
        pipe.execute_command("RPUSH", f"{self.namespace}:{queue}", *payloads)
        pipe.execute_command("EXEC")
        pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        pipe.execute_command("ROLE")
        *_, executed, acked, role = pipe.execute()
        if executed is None:  # a discarded transaction
            raise redis.exceptions.ExecAbortError("the transaction was discarded; nothing was enqueued")
        return int(acked), role

    def _demoted(self, role: Any) -> str:
        """Why the server that took the last chunk is no longer the master ('' when it still is): its own ROLE,
        or, behind Sentinel, the sentinels naming another master (an old master that was frozen through a failover
        says "master" for seconds after it resumes; idle connections to it are dropped by the pool then)."""
        name = role[0].decode() if role and isinstance(role[0], bytes) else str(role[0] if role else "")
        if name != "master":
            self.client.connection_pool.disconnect()
            return f"it says it is a {name}"
        proxy = getattr(self.client.connection_pool, "proxy", None)  # a SentinelConnectionPool's
        if proxy is None:
            return ""
        before = proxy.master_address
        now = proxy.get_master_address()  # asks the sentinels; drops idle connections when it changed
        return f"the sentinels name {now[0]}:{now[1]}" if before is not None and now != before else ""

    # --- typed helpers, one per actor -----------------------------------------
    def process_asset(
        self,
        asset_id: str,
        source: str,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        crm_lead_id: int | None = None,
        workspace: str | None = None,
    ) -> str:
        return self.send(
            "process_asset",
            {
                "asset_id": asset_id,
                "source": source,
                "filename": filename,
                "content_type": content_type,
                "crm_lead_id": crm_lead_id,
                "workspace": workspace,
            },
        )

    def extract_knowledge(self, asset_id: str) -> str:
        return self.send("extract_knowledge", {"asset_id": asset_id})

    def crm_upsert_contact(
        self, external_id: str, name: str, *, emails: list[str] | None = None, phones: list[str] | None = None
    ) -> str:
        return self.send(
            "crm_upsert_contact",
            {"external_id": external_id, "name": name, "emails": emails, "phones": phones},
        )

    def crm_create_lead(
        self, external_id: str, name: str, *, price: int | None = None, contact_external_id: str | None = None
    ) -> str:
        return self.send(
            "crm_create_lead",
            {
                "external_id": external_id,
                "name": name,
                "price": price,
                "contact_external_id": contact_external_id,
            },
        )

    def crm_add_note(self, entity: str, entity_id: int, text: str, idempotency_key: str) -> str:
        return self.send(
            "crm_add_note",
            {"entity": entity, "entity_id": entity_id, "text": text, "idempotency_key": idempotency_key},
        )

    def crm_handle_webhook(self, body: str, token: str) -> str:
        return self.send("crm_handle_webhook", {"body": body, "token": token})
