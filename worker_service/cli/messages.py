"""``worker send`` (validate and send one message) and ``worker asset`` (an asset's record)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from worker_service.cli import common


def cmd_send(args: argparse.Namespace) -> int:
    from worker_contracts import (
        CONTRACTS,
        InvalidPayload,
        Sender,
        UnknownActor,
        build_message,
        validate_payload,
    )

    settings = common.settings()
    try:
        payload = json.loads(args.payload)
        kwargs = validate_payload(args.actor, payload)
    except json.JSONDecodeError as exc:
        common.err(f"invalid payload for {args.actor}: not JSON ({exc})")
        return 1
    except (InvalidPayload, UnknownActor) as exc:
        common.err(str(exc))
        return 1
    problem = file_source_problem(kwargs)
    if problem:
        common.err(problem)
        return 1
    if settings.broker_kind == "redis":
        from worker_service.brokers import make_redis_client

        queue = CONTRACTS[args.actor][0]  # its Redis: BROKER_SHARDS' for the queue, else BROKER_URL's
        sender = Sender(
            make_redis_client(settings, settings.shard_urls.get(queue)),
            wait_replicas=settings.redis_wait_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
        )
        message_id = sender.send(args.actor, kwargs)
    else:
        from dramatiq.message import Message

        from worker_service.brokers import build_broker

        broker = build_broker(settings, [])
        message: Message[Any] = Message(**{**build_message(args.actor, kwargs), "args": ()})
        message_id = broker.enqueue(message).message_id
        broker.close()
    common.out(message_id)
    return 0


def cmd_asset(args: argparse.Namespace) -> int:
    from worker_service.database.queries import asset_record

    settings = common.settings()
    common.init(settings)
    if args.asset_id == "delete" and args.target:
        from worker_service.assets.deletion import delete_asset

        if not delete_asset(args.target, common.operator(), settings):
            common.err(f"unknown asset {args.target}")
            return 1
        common.out(f"deleted {args.target}: its record, text and every contribution to the knowledge graph")
        return 0
    record = asset_record(args.asset_id)
    if record is None:
        common.err(f"unknown asset {args.asset_id}")
        return 1
    if args.json:
        common.out(json.dumps(record, ensure_ascii=False))
    else:
        for key, value in record.items():
            common.out(f"{key:26} {'' if value is None else value}")
    return 0


def _send_epilog() -> str:
    from worker_contracts import CONTRACTS

    actors = "\n".join(f"  {name:20} (queue {queue})" for name, (queue, _) in sorted(CONTRACTS.items()))
    return (
        f"actors:\n{actors}\n\nexamples (file: sources are relative to STORAGE_ROOT, var/storage under "
        "`make run`):\n"
        '  worker send process_asset \'{"asset_id": "a-1", "source": "file:report.pdf"}\'\n'
        '  worker send process_asset \'{"asset_id": "a-2", "source": "https://example.com/x.docx"}\'\n'
        '  worker send extract_knowledge \'{"asset_id": "a-1"}\'\n'
        "docs/contracts.rst lists every field."
    )


def file_source_problem(kwargs: dict[str, Any]) -> str | None:
    """Why a ``file:`` source can never be read (the worker refuses it as forbidden_source); None when fine."""
    from pathlib import PurePosixPath

    source = kwargs.get("source")
    if not isinstance(source, str) or not source.startswith("file:"):
        return None
    path = PurePosixPath(source.removeprefix("file:"))
    if path.is_absolute() or ".." in path.parts:
        return (
            f"source {source!r}: a file: source is a path inside STORAGE_ROOT, without '..' and not absolute; "
            "copy the file under STORAGE_ROOT and name it from there"
        )
    return None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "send",
        help="validate and send one message; prints its message_id",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_send_epilog(),
        description="Validates the payload against the actor's contract, sends it to the broker "
        "of BROKER_URL and prints the message id.",
    )
    p.add_argument("actor", help="one of the actors below")
    p.add_argument("payload", help="the kwargs as a JSON object")
    p.set_defaults(func=cmd_send)
    p = sub.add_parser(
        "asset",
        help="show an asset record; `worker asset delete ID` deletes one for good",
        description="worker asset ID [--json]: the record.  worker asset delete ID: the record, its "
        "text and its whole contribution to the knowledge graph are deleted (audited, "
        "an asset.deleted event is sent).",
    )
    p.add_argument("asset_id", help="the asset's id (or `delete`); e.g. worker asset a-1 --json")
    p.add_argument("target", nargs="?", help="with `delete`: the asset to delete")
    p.add_argument("--json", action="store_true", help="the record as JSON (the API's keys)")
    p.set_defaults(func=cmd_asset)
