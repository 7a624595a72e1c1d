"""``worker web`` (the dashboard), ``worker users`` (its named users) and ``worker sessions`` (their key)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from worker_service.cli import common


def cmd_web(args: argparse.Namespace) -> int:
    from worker_service.web import InsecureConfiguration, serve

    settings = common.settings()
    common.init(settings)
    try:
        serve(settings, insecure_local=args.insecure_local)
    except InsecureConfiguration as exc:
        common.err(f"worker web: {exc}")
        return 2
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    """Named dashboard users; the password of ``add`` is read from standard input (never an argument)."""
    from worker_service.web.users import add_user, list_users, remove_user

    common.init(common.settings())
    if args.users_command == "list":
        common.out(json.dumps(list_users(), ensure_ascii=False))
        return 0
    if args.users_command == "remove":
        if not remove_user(args.name):
            common.err(f"no user {args.name}")
            return 1
        common.out(f"removed {args.name}")
        return 0
    password = getpass.getpass(f"password for {args.name}: ") if sys.stdin.isatty() else sys.stdin.readline()
    try:
        new = add_user(args.name, password.rstrip("\r\n"), args.role)
    except ValueError as exc:
        common.err(f"worker users add: {exc}")
        return 1
    common.out(f"{'added' if new else 'updated'} {args.name} ({args.role})")
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    """``worker sessions rotate``: a new generated session key; every dashboard session ends at once."""
    from worker_service.brokers import make_redis_client
    from worker_service.web.sessions import rotate_session_secret

    settings = common.settings()
    if settings.web_session_secret:
        common.err("worker sessions rotate: WEB_SESSION_SECRET is set; change it to rotate the key")
        return 2
    rotate_session_secret(make_redis_client(settings, settings.ratelimit_url))
    common.out("session key rotated: every dashboard session has ended")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("web", help="serve the dashboard on WEB_HOST:WEB_PORT")
    p.add_argument(
        "--insecure-local",
        action="store_true",
        help="allow running without WEB_PASSWORD/WEB_API_TOKEN, on 127.0.0.1 only",
    )
    p.set_defaults(func=cmd_web)
    users = sub.add_parser("users", help="named dashboard users").add_subparsers(
        dest="users_command", required=True
    )
    p = users.add_parser("add", help="add (or update) a user; the password is read from standard input")
    p.add_argument("name", help="the login name, e.g. worker users add alice --role operator")
    p.add_argument(
        "--role",
        choices=["viewer", "operator"],
        required=True,
        help="viewers read everything and change nothing; operators act (audited)",
    )
    users.add_parser("list", help="the users and their roles (JSON)")
    p = users.add_parser("remove", help="remove a user: their open sessions end at their next request")
    p.add_argument("name", help="the login name")
    for p in users.choices.values():
        p.set_defaults(func=cmd_users)
    sessions = sub.add_parser("sessions", help="dashboard sessions").add_subparsers(
        dest="sessions_command", required=True
    )
    sessions.add_parser("rotate", help="replace the generated session key: every session ends").set_defaults(
        func=cmd_sessions
    )
