"""The ``worker`` command: run, check, migrate, send, asset, dlq.

Configuration mistakes end with one readable line and exit code 2 (1 for
``check``), never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import shlex
import shutil
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from settings import Settings, SettingsError, get_settings, is_loopback_host, mask_url
from worker_service.database.connection import DatabaseUnavailable
from worker_service.runtime.worker_groups import (
    GROUP_QUEUES,
    WorkerGroup,
    group_named,
    metrics_dir,
    worker_groups,
)

logger = logging.getLogger("worker.cli")


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _settings() -> Settings:
    return get_settings()


def _init(settings: Settings, *, migrate: bool = True) -> None:
    from worker_service.database import init_database
    from worker_service.database import migrate as run_migrations
    from worker_service.observability.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    init_database(settings.database_url, statement_timeout_ms=settings.database_statement_timeout_ms)
    if migrate:
        run_migrations()


def _operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


# --- run --------------------------------------------------------------------------
def dramatiq_command(group: WorkerGroup, settings: Settings) -> list[str]:
    """The exact Dramatiq command `worker run` executes for ``group`` (in its own process, see cmd_run).

    ``--skip-logging``: Dramatiq's processes keep the JSON (or text) logging this service configured
    instead of adding Dramatiq's own plain-text handler beside it.
    """
    return ["dramatiq", "actors", "--queues", *group.queues, "--processes", str(group.processes),
            "--threads", str(group.threads),
            "--worker-shutdown-timeout", str(settings.shutdown_grace_seconds * 1000), "--skip-logging"]


def _worker_script() -> list[str]:
    script = Path(sys.argv[0])
    if script.name == "worker":
        return [str(script.absolute())]
    installed = Path(sys.executable).parent / "worker"
    return [str(installed)] if installed.exists() else [sys.executable, str(Path(__file__).absolute())]


def cmd_run(args: argparse.Namespace) -> int:
    """One worker group (``--group`` or WORKER_GROUP), or every group under one supervisor."""
    from worker_service.runtime.supervision import supervise

    settings = _settings()
    name = args.group or settings.worker_group
    if name:
        return _run_group(name)
    _init(settings, migrate=True)  # once, before the groups start (each checks again: a no-op)
    groups = worker_groups(settings)
    commands = {}
    for group in groups:
        env = {**os.environ, "WORKER_GROUP": group.name,
               "METRICS_PORT": str(settings.metrics_port + group.index if settings.metrics_port else 0)}
        commands[group.name] = ([*_worker_script(), "run", "--group", group.name], env)
    logger.info("starting the worker groups: %s", ", ".join(f"{g.name} ({g.processes}x{g.threads})" for g in groups),
                extra={"groups": {g.name: {"queues": g.queues, "processes": g.processes, "threads": g.threads}
                                  for g in groups}})
    return supervise(commands)


def _run_group(name: str) -> int:
    """Become the group's Dramatiq main process (no intermediate parent).

    A supervisor's signal, a process-group kill or a SIGKILL therefore reach the process that owns the
    worker processes; those ask the kernel for SIGTERM when it dies (middleware.recovery,
    supervision.py), so no worker outlives it.  Dramatiq's own handlers do the rest: SIGTERM/SIGINT stop
    gracefully (once, even when a terminal signals the whole group: the worker processes ignore SIGINT),
    SIGHUP reloads by re-executing ``worker run``.
    """
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    from worker_service.database import database_proxy

    os.environ["WORKER_GROUP"] = name  # the worker processes forked below read it (their metrics directory)
    get_settings.cache_clear()
    settings = _settings()
    group = group_named(settings, name)
    _init(settings, migrate=True)
    if database_proxy.obj is not None:
        database_proxy.obj.close()  # worker processes are forked from here: they must not share its connection
    directory = metrics_dir(settings)
    if directory.exists():  # stale per-process files of an earlier run would be summed in forever
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    command = dramatiq_command(group, settings)
    logger.info("starting: %s", shlex.join(command), extra={"command": command, "group": name})
    return int(dramatiq_main(make_argument_parser().parse_args(command[1:])) or 0)


# --- web ---------------------------------------------------------------------------------------
def cmd_web(args: argparse.Namespace) -> int:
    from worker_service.web import InsecureConfiguration, serve

    settings = _settings()
    _init(settings)
    try:
        serve(settings, insecure_local=args.insecure_local)
    except InsecureConfiguration as exc:
        _err(f"worker web: {exc}")
        return 2
    return 0


# --- check ------------------------------------------------------------------------
def _check_redis(settings: Settings, problems: list[str], warnings: list[str]) -> None:
    import redis

    client = redis.Redis.from_url(settings.broker_url, socket_timeout=3, socket_connect_timeout=3, retry=None)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"broker {mask_url(settings.broker_url)} unreachable: {exc}")
        return
    try:
        config = {**client.config_get("appendonly"), **client.config_get("appendfsync"),
                  **client.config_get("maxmemory-policy")}
    except Exception:  # noqa: BLE001 - managed Redis may forbid CONFIG
        warnings.append("cannot read Redis CONFIG; make sure appendonly=yes and maxmemory-policy=noeviction")
        return
    if config.get("appendonly") != "yes":
        warnings.append("Redis appendonly is off: queued messages are lost if Redis restarts "
                        "(set appendonly yes, appendfsync everysec)")
    if config.get("maxmemory-policy", "noeviction") != "noeviction":
        warnings.append(f"Redis maxmemory-policy is {config['maxmemory-policy']}: Redis may evict queued "
                        "messages (set maxmemory-policy noeviction)")


def _check_rabbitmq(settings: Settings, problems: list[str]) -> None:
    import pika

    params = pika.URLParameters(settings.broker_url)
    params.connection_attempts = 1
    params.socket_timeout = 3
    params.blocked_connection_timeout = 3
    params.stack_timeout = 5
    try:
        pika.BlockingConnection(params).close()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"broker {mask_url(settings.broker_url)} unreachable: {exc or type(exc).__name__}")


def cmd_check(args: argparse.Namespace) -> int:
    try:
        settings = get_settings()
    except SettingsError as exc:
        _err(f"PROBLEM {exc}")
        return 1
    problems: list[str] = []
    warnings: list[str] = []
    _out("effective configuration (secrets masked):")
    for key, value in settings.masked().items():
        _out(f"  {key}={'' if value is None else value}")
    if settings.broker_kind == "redis":
        _check_redis(settings, problems, warnings)
    else:
        _check_rabbitmq(settings, problems)
    broker_host = urlsplit(settings.broker_url).hostname
    if settings.database_url.startswith("sqlite") and not is_loopback_host(broker_host):
        warnings.append("SQLite with a non-loopback broker: workers on several hosts need PostgreSQL "
                        "(DATABASE_URL=postgresql://...)")
    try:
        from worker_service.database import current_version, init_database, latest_version

        init_database(settings.database_url, statement_timeout_ms=settings.database_statement_timeout_ms)
        version = current_version()
        if version < latest_version():
            warnings.append(f"database schema at version {version}, latest is {latest_version()}: run worker migrate")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"database {mask_url(settings.database_url)} unusable: {exc}")
    for line in warnings:
        _out(f"WARN {line}")
    for line in problems:
        _out(f"PROBLEM {line}")
    _out("OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


# --- migrate ------------------------------------------------------------------------
def cmd_migrate(args: argparse.Namespace) -> int:
    from worker_service.database import current_version, migrate

    _init(_settings())
    applied = migrate()
    _out(f"schema version {current_version()}" + (f" (applied {applied})" if applied else " (up to date)"))
    return 0


# --- send ------------------------------------------------------------------------------
def cmd_send(args: argparse.Namespace) -> int:
    from worker_contracts import InvalidPayload, Sender, UnknownActor, build_message, validate_payload

    settings = _settings()
    try:
        payload = json.loads(args.payload)
        kwargs = validate_payload(args.actor, payload)
    except json.JSONDecodeError as exc:
        _err(f"invalid payload for {args.actor}: not JSON ({exc})")
        return 1
    except (InvalidPayload, UnknownActor) as exc:
        _err(str(exc))
        return 1
    if settings.broker_kind == "redis":
        from worker_service.brokers import make_redis_client

        message_id = Sender(make_redis_client(settings)).send(args.actor, kwargs)
    else:
        from dramatiq.message import Message

        from worker_service.brokers import build_broker

        broker = build_broker(settings, [])
        message: Message[Any] = Message(**{**build_message(args.actor, kwargs), "args": ()})
        message_id = broker.enqueue(message).message_id
        broker.close()
    _out(message_id)
    return 0


# --- asset --------------------------------------------------------------------------------
def cmd_asset(args: argparse.Namespace) -> int:
    from worker_service.database.queries import asset_record

    _init(_settings())
    record = asset_record(args.asset_id)
    if record is None:
        _err(f"unknown asset {args.asset_id}")
        return 1
    if args.json:
        _out(json.dumps(record, ensure_ascii=False))
    else:
        for key, value in record.items():
            _out(f"{key:26} {'' if value is None else value}")
    return 0


# --- crm ----------------------------------------------------------------------------------------
def cmd_crm(args: argparse.Namespace) -> int:
    from worker_service.database import CrmEvent, CrmLink, session
    from worker_service.database.models import iso

    settings = _settings()
    _init(settings)
    if args.crm_command == "purge":
        from worker_service.database.retention import purge_crm_events

        days = settings.crm_events_retention_days if args.older_than is None else args.older_than
        _out(f"purged {purge_crm_events(days)} webhook event(s) older than {days:g} days")
        return 0
    with session():
        if args.crm_command == "link":
            query = CrmLink.select().where(CrmLink.kind == args.kind)
            query = query.where(CrmLink.kommo_id == int(args.key)) if args.by_kommo_id else query.where(
                CrmLink.key == args.key)
            rows = [{"kind": r.kind, "key": r.key, "kommo_id": r.kommo_id, "entity": r.entity,
                     "entity_id": r.entity_id, "status_id": r.status_id, "pipeline_id": r.pipeline_id,
                     "price": r.price, "status_changed_at": r.status_changed_at,
                     "updated_at": iso(r.updated_at)} for r in query]
            if not rows:
                _err(f"no {args.kind} link for {args.key}")
                return 1
            _out(json.dumps(rows[0], ensure_ascii=False))
            return 0
        rows = [{"id": e.id, "entity": e.entity, "action": e.action, "kommo_id": e.kommo_id, "fields": e.fields,
                 "received_at": iso(e.received_at)}
                for e in CrmEvent.select().order_by(CrmEvent.id.desc()).limit(args.limit)]
    _out(json.dumps(rows, ensure_ascii=False))
    return 0


# --- users ---------------------------------------------------------------------------------------
def cmd_users(args: argparse.Namespace) -> int:
    """Named dashboard users; the password of ``add`` is read from standard input (never an argument)."""
    from worker_service.web.users import add_user, list_users, remove_user

    _init(_settings())
    if args.users_command == "list":
        _out(json.dumps(list_users(), ensure_ascii=False))
        return 0
    if args.users_command == "remove":
        if not remove_user(args.name):
            _err(f"no user {args.name}")
            return 1
        _out(f"removed {args.name}")
        return 0
    password = getpass.getpass(f"password for {args.name}: ") if sys.stdin.isatty() else sys.stdin.readline()
    try:
        new = add_user(args.name, password.rstrip("\r\n"), args.role)
    except ValueError as exc:
        _err(f"worker users add: {exc}")
        return 1
    _out(f"{'added' if new else 'updated'} {args.name} ({args.role})")
    return 0


# --- dlq -------------------------------------------------------------------------------------
def _dlq_store():  # -> DeadLetterStore
    from worker_service.brokers import build_broker
    from worker_service.deadletters import DeadLetterStore

    settings = _settings()
    _init(settings)
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
            _out(json.dumps(rows, ensure_ascii=False))
        else:
            for r in rows:
                _out(f"{r['id']:>6} {r['failed_at']} {r['state']:8} {r['actor']:20} {r['error_type']:18} "
                     f"{(r['error_message'] or '')[:80]}")
            _out(f"{len(rows)} shown, {store.count(_filter(args))} matching")
        return 0
    if args.dlq_command == "show":
        row = store.get(args.id)
        if row is None:
            _err(f"no dead letter {args.id}")
            return 1
        record = to_public(row, full=True)
        if args.json:
            _out(json.dumps(record, ensure_ascii=False))
        else:
            for key, value in record.items():
                if key == "traceback":
                    continue
                _out(f"{key:18} {json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value}")
            if record.get("traceback"):
                _out("traceback:")
                _out(record["traceback"])
        return 0
    if args.dlq_command in ("requeue", "delete"):
        if not args.ids and not args.all:
            _err(f"worker dlq {args.dlq_command}: give IDs or --all with filters")
            return 2
        who = _operator()
        if args.dlq_command == "requeue":
            done = store.requeue_matching(_filter(args), who) if args.all else store.requeue(args.ids, who)
            _out(f"requeued {len(done)}" + (f": {' '.join(map(str, done))}" if done else ""))
        else:
            n = store.delete_matching(_filter(args), who) if args.all else store.delete(args.ids, who)
            _out(f"deleted {n}")
        return 0
    if args.dlq_command == "purge":
        letters, audits = store.purge(args.older_than, _operator())
        _out(f"purged {letters} dead letter(s) and {audits} audit entr{'y' if audits == 1 else 'ies'}")
        return 0
    if args.dlq_command == "audit":
        rows = store.audit(limit=args.limit)
        from worker_service.database.models import iso

        data = [{"at": iso(r.at), "who": r.who, "action": r.action, "target": r.target, "count": r.count,
                 "detail": r.detail} for r in rows]
        if args.json:
            _out(json.dumps(data, ensure_ascii=False))
        else:
            for r in data:
                _out(f"{r['at']} {r['who']:30} {r['action']:8} {r['count']:>5} {r['target']}")
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


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run every worker group (or one: --group), sized by the *_PROCESSES/*_THREADS settings")
    p.add_argument("--group", choices=list(GROUP_QUEUES), help="run only this group (default: WORKER_GROUP, else all)")
    p.set_defaults(func=cmd_run)
    sub.add_parser("check", help="check configuration, broker and database").set_defaults(func=cmd_check)
    p = sub.add_parser("web", help="serve the dashboard on WEB_HOST:WEB_PORT")
    p.add_argument("--insecure-local", action="store_true",
                   help="allow running without WEB_PASSWORD/WEB_API_TOKEN, on 127.0.0.1 only")
    p.set_defaults(func=cmd_web)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    p = sub.add_parser("send", help="validate and send one message; prints its message_id")
    p.add_argument("actor")
    p.add_argument("payload", help="the kwargs as a JSON object")
    p.set_defaults(func=cmd_send)
    p = sub.add_parser("asset", help="show an asset record")
    p.add_argument("asset_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_asset)
    crm = sub.add_parser("crm", help="the local CRM ledger and webhook events (JSON)").add_subparsers(
        dest="crm_command", required=True)
    p = crm.add_parser("link", help="one ledger row: our key (or --by-kommo-id) -> Kommo id and lead state")
    p.add_argument("kind", choices=["contact", "lead", "note"])
    p.add_argument("key")
    p.add_argument("--by-kommo-id", action="store_true")
    p = crm.add_parser("events", help="the latest typed webhook events")
    p.add_argument("--limit", type=int, default=50)
    p = crm.add_parser("purge", help="delete webhook events older than DAYS (default CRM_EVENTS_RETENTION_DAYS)")
    p.add_argument("--older-than", type=float, metavar="DAYS")
    for p in crm.choices.values():
        p.set_defaults(func=cmd_crm)
    users = sub.add_parser("users", help="named dashboard users").add_subparsers(dest="users_command", required=True)
    p = users.add_parser("add", help="add (or update) a user; the password is read from standard input")
    p.add_argument("name")
    p.add_argument("--role", choices=["viewer", "operator"], required=True)
    users.add_parser("list", help="the users and their roles (JSON)")
    p = users.add_parser("remove")
    p.add_argument("name")
    for p in users.choices.values():
        p.set_defaults(func=cmd_users)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        _err(f"worker: {exc}")
        return 2
    except DatabaseUnavailable as exc:
        _err(f"worker: database unavailable: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
