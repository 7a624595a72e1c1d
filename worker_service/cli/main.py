"""The ``worker`` command's parser and error mapping; each command group registers itself from its module.

Configuration mistakes end with one readable line and exit code 2 (1 for ``check``), never a traceback.
"""

from __future__ import annotations

import argparse

from settings import SettingsError
from worker_service.cli import check, common, crm, dlq, graph, messages, run, web
from worker_service.database.connection import DatabaseUnavailable

COMMAND_GROUPS = (run, check, web, messages, crm, dlq, graph)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worker", description="The worker service: run, check, migrate, send, "
                                                                "asset, graph, crm, users, dlq, web.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        common.err(f"worker: {exc}")
        return 2
    except DatabaseUnavailable as exc:
        common.err(f"worker: database unavailable: {exc}")
        return 1
