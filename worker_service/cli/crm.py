"""``worker crm``: the local CRM ledger and webhook events."""

from __future__ import annotations

import argparse
import json

from worker_service.cli import common


def cmd_crm(args: argparse.Namespace) -> int:
    from worker_service.database import CrmEvent, CrmLink, session
    from worker_service.database.models import iso

    settings = common.settings()
    common.init(settings)
    if args.crm_command == "purge":
        from worker_service.database.retention import purge_crm_events

        days = settings.crm_events_retention_days if args.older_than is None else args.older_than
        common.out(f"purged {purge_crm_events(days)} webhook event(s) older than {days:g} days")
        return 0
    with session():
        if args.crm_command == "link":
            query = CrmLink.select().where(CrmLink.kind == args.kind)
            query = (
                query.where(CrmLink.kommo_id == int(args.key))
                if args.by_kommo_id
                else query.where(CrmLink.key == args.key)
            )
            rows = [
                {
                    "kind": r.kind,
                    "key": r.key,
                    "kommo_id": r.kommo_id,
                    "entity": r.entity,
                    "entity_id": r.entity_id,
                    "status_id": r.status_id,
                    "pipeline_id": r.pipeline_id,
                    "price": r.price,
                    "status_changed_at": r.status_changed_at,
                    "updated_at": iso(r.updated_at),
                }
                for r in query
            ]
            if not rows:
                common.err(f"no {args.kind} link for {args.key}")
                return 1
            common.out(json.dumps(rows[0], ensure_ascii=False))
            return 0
        rows = [
            {
                "id": e.id,
                "entity": e.entity,
                "action": e.action,
                "kommo_id": e.kommo_id,
                "fields": e.fields,
                "received_at": iso(e.received_at),
            }
            for e in CrmEvent.select().order_by(CrmEvent.id.desc()).limit(args.limit)
        ]
    common.out(json.dumps(rows, ensure_ascii=False))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    crm = sub.add_parser("crm", help="the local CRM ledger and webhook events (JSON)").add_subparsers(
        dest="crm_command", required=True
    )
    p = crm.add_parser("link", help="one ledger row: our key (or --by-kommo-id) -> Kommo id and lead state")
    p.add_argument("kind", choices=["contact", "lead", "note"], help="what the key names")
    p.add_argument("key", help="our external id (e.g. u-1), or Kommo's id with --by-kommo-id")
    p.add_argument(
        "--by-kommo-id",
        action="store_true",
        help="KEY is Kommo's id, e.g. worker crm link lead 10701093 --by-kommo-id",
    )
    p = crm.add_parser("events", help="the latest typed webhook events")
    p.add_argument("--limit", type=int, default=50, help="at most this many, newest first (default 50)")
    p = crm.add_parser(
        "purge", help="delete webhook events older than DAYS (default CRM_EVENTS_RETENTION_DAYS)"
    )
    p.add_argument("--older-than", type=float, metavar="DAYS", help="age in days, e.g. --older-than 30")
    for p in crm.choices.values():
        p.set_defaults(func=cmd_crm)
