"""``worker dlq``: list, show, requeue, delete and purge dead letters; the audit log."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from worker_service.cli import common


def _dlq_store():  # -> DeadLetterStore
    from worker_service.brokers import build_broker
    from worker_service.deadletters import DeadLetterStore

    settings = common.settings()
    common.init(settings)
    return DeadLetterStore(build_broker(settings, []))


def _filter(args: argparse.Namespace, state: str | None = "dead"):  # -> Filter
    from worker_service.deadletters import Filter

    return Filter(actor=args.actor, queue=getattr(args, "queue", None), error_type=args.error_type,
                  state=getattr(args, "state", None) or state, since=args.since, until=args.until)


def cmd_dlq(args: argparse.Namespace) -> int:
    from worker_service.deadletters import to_public

    store = _dlq_store()
    if args.dlq_command == "list":
        rows = [to_public(r) for r in store.list(_filter(args), limit=args.limit, offset=args.offset)]
        if args.json:
            common.out(json.dumps(rows, ensure_ascii=False))
        else:
            for r in rows:
                common.out(f"{r['id']:>6} {r['failed_at']} {r['state']:8} {r['actor']:20} {r['error_type']:18} "
                     f"{(r['error_message'] or '')[:80]}")
            common.out(f"{len(rows)} shown, {store.count(_filter(args))} matching")
        return 0
    if args.dlq_command == "show":
        row = store.get(args.id)
        if row is None:
            common.err(f"no dead letter {args.id}")
            return 1
        record = to_public(row, full=True)
        if args.json:
            common.out(json.dumps(record, ensure_ascii=False))
        else:
            for key, value in record.items():
                if key == "traceback":
                    continue
                common.out(f"{key:18} {json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value}")
            if record.get("traceback"):
                common.out("traceback:")
                common.out(record["traceback"])
        return 0
    if args.dlq_command in ("requeue", "delete"):
        if not args.ids and not args.all:
            common.err(f"worker dlq {args.dlq_command}: give IDs or --all with filters")
            return 2
        who = common.operator()
        if args.dlq_command == "requeue":
            if args.all:  # in batches; the count so far on stderr, for a long one
                done = store.requeue_matching(_filter(args), who, progress=lambda n: common.err(f"requeued {n}..."))
            else:
                done = store.requeue(args.ids, who)
            listed = f": {' '.join(map(str, done))}" if done and len(done) <= 1000 else ""
            common.out(f"requeued {len(done)}{listed}")
        else:
            n = store.delete_matching(_filter(args), who) if args.all else store.delete(args.ids, who)
            common.out(f"deleted {n}")
        return 0
    if args.dlq_command == "purge":
        letters, audits = store.purge(args.older_than, common.operator())
        common.out(f"purged {letters} dead letter(s) and {audits} audit entr{'y' if audits == 1 else 'ies'}")
        return 0
    if args.dlq_command == "audit":
        data = store.audit(limit=args.limit)
        if args.json:
            common.out(json.dumps(data, ensure_ascii=False))
        else:
            for r in data:
                common.out(f"{r['at']} {r['who']:30} {r['action']:8} {r['count']:>5} {r['target']}")
        return 0
    return 2


def _date(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {value!r}") from None


def _add_filters(p: argparse.ArgumentParser, with_state: bool) -> None:
    p.add_argument("--actor")
    p.add_argument("--queue")
    p.add_argument("--error-type")
    if with_state:
        p.add_argument("--state", choices=["dead", "requeued", "deleted"])
    p.add_argument("--since", type=_date, help="failed at or after (ISO-8601, UTC)")
    p.add_argument("--until", type=_date, help="failed before (ISO-8601, UTC)")


def register(sub: argparse._SubParsersAction) -> None:
    dlq = sub.add_parser("dlq", help="dead letters").add_subparsers(dest="dlq_command", required=True)
    p = dlq.add_parser("list")
    _add_filters(p, with_state=True)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p = dlq.add_parser("show")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    for name in ("requeue", "delete"):
        p = dlq.add_parser(name)
        p.add_argument("ids", nargs="*", type=int)
        p.add_argument("--all", action="store_true", help="every dead letter matching the filters")
        _add_filters(p, with_state=False)
    p = dlq.add_parser("purge", help="delete dead letters and audit entries older than DAYS")
    p.add_argument("--older-than", type=float, required=True, metavar="DAYS")
    p = dlq.add_parser("audit", help="the operator audit log")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true")
    for p in dlq.choices.values():
        p.set_defaults(func=cmd_dlq)
