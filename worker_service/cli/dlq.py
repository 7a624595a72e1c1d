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

    return Filter(
        actor=args.actor,
        queue=getattr(args, "queue", None),
        error_type=args.error_type,
        state=getattr(args, "state", None) or state,
        since=args.since,
        until=args.until,
        asset_id=args.asset,
    )


def cmd_dlq(args: argparse.Namespace) -> int:
    from worker_service.deadletters import to_public

    store = _dlq_store()
    if args.dlq_command == "list":
        rows = [to_public(r) for r in store.list(_filter(args), limit=args.limit, offset=args.offset)]
        if args.json:
            common.out(json.dumps(rows, ensure_ascii=False))
        else:
            for r in rows:
                common.out(
                    f"{r['id']:>6} {r['failed_at']} {r['state']:8} {r['actor']:20} {r['error_code']:18} "
                    f"{r['asset_id'] or '-':24} {(r['error_message'] or '')[:80]}"
                )
            common.out(f"{len(rows)} shown, {store.count(_filter(args))} matching")
        if not rows and args.offset == 0:
            codes = ", ".join(f"{code} ({n})" for code, n in store.recent_codes().items())
            common.err(
                f"no dead letter matches; among the newest dead ones: {codes}"
                if codes
                else "no dead letter matches, and there are no dead ones"
            )
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
                common.out(
                    f"{key:18} {json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value}"
                )
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
                done = store.requeue_matching(
                    _filter(args), who, progress=lambda n: common.err(f"requeued {n}...")
                )
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
    p.add_argument("--actor", help="the actor's name, e.g. process_asset")
    p.add_argument("--queue", help="the queue's name, e.g. assets")
    p.add_argument(
        "--error-type",
        metavar="CODE",
        help="a domain code the asset record got (corrupt, encrypted, fetch_failed, ...) or a dead-letter "
        "type (permanent_error, retries_exhausted, timeout, crash_loop, ...)",
    )
    p.add_argument("--asset", metavar="ASSET_ID", help="only the dead letters of this asset")
    if with_state:
        p.add_argument("--state", choices=["dead", "requeued", "deleted"], help="default: dead")
    p.add_argument("--since", type=_date, help="failed at or after (ISO-8601, UTC)")
    p.add_argument("--until", type=_date, help="failed before (ISO-8601, UTC)")


def register(sub: argparse._SubParsersAction) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    dlq = sub.add_parser(
        "dlq",
        help="dead letters: messages that failed for good",
        formatter_class=raw,
        description="Dead letters: list, show, requeue, delete, purge; every action is audited.",
        epilog="examples:\n  worker dlq list --error-type corrupt\n  worker dlq show 42\n"
        "  worker dlq requeue --all --error-type fetch_failed\n  worker dlq audit --limit 20",
    ).add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")
    p = dlq.add_parser(
        "list",
        help="newest first, filtered",
        formatter_class=raw,
        epilog="example:\n  worker dlq list --error-type encrypted --since 2026-12-01 --json",
    )
    _add_filters(p, with_state=True)
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--offset", type=int, default=0, help="skip this many")
    p.add_argument(
        "--json", action="store_true", help="one JSON array (asset_id, error_code, error_type, ...)"
    )
    p = dlq.add_parser(
        "show",
        help="one dead letter: payload (secrets masked), history, traceback",
        formatter_class=raw,
        epilog="example:\n  worker dlq show 42 --json",
    )
    p.add_argument("id", type=int, help="the dead letter's number")
    p.add_argument("--json", action="store_true", help="as JSON")
    for name, does in (("requeue", "send again, with a fresh retry budget"), ("delete", "mark deleted")):
        p = dlq.add_parser(
            name,
            help=f"{does}: by id, or --all matching the filters",
            formatter_class=raw,
            epilog=f"examples:\n  worker dlq {name} 41 42\n  worker dlq {name} --all --error-type timeout",
        )
        p.add_argument("ids", nargs="*", type=int, help="dead letter numbers")
        p.add_argument("--all", action="store_true", help="every dead letter matching the filters")
        _add_filters(p, with_state=False)
    p = dlq.add_parser(
        "purge",
        help="delete dead letters and audit entries older than DAYS",
        formatter_class=raw,
        epilog="example:\n  worker dlq purge --older-than 30",
    )
    p.add_argument("--older-than", type=float, required=True, metavar="DAYS", help="age in days")
    p = dlq.add_parser(
        "audit",
        help="the operator audit log, newest first",
        formatter_class=raw,
        epilog="example:\n  worker dlq audit --limit 20 --json",
    )
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="as JSON")
    for p in dlq.choices.values():
        p.set_defaults(func=cmd_dlq)
