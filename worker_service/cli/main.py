"""The ``worker`` command's parser and error mapping; each command group registers itself from its module.

Configuration mistakes end with one readable line and exit code 2 (1 for ``check``), never a traceback; so does
a broker that cannot be reached (exit 1, naming its URL with the password masked).
"""

from __future__ import annotations

import argparse

from settings import SettingsError
from worker_service.cli import check, common, crm, dlq, graph, messages, run, web
from worker_service.database.connection import DatabaseUnavailable

COMMAND_GROUPS = (run, check, web, messages, crm, dlq, graph)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worker",
        description="The worker service: run, check, migrate, send, asset, graph, crm, users, dlq, web.",
    )
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
    except Exception as exc:
        reason = _broker_unreachable(exc)
        if reason is None:
            raise
        common.err(f"worker: cannot reach the broker at {_broker_url()}: {reason}; `worker check` says more")
        return 1


def _broker_unreachable(exc: BaseException) -> str | None:
    """The reason, in one line, when ``exc`` says the broker cannot be reached (Redis or RabbitMQ); else None."""
    import redis

    unreachable: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError)
    try:
        import pika.exceptions

        unreachable += (pika.exceptions.AMQPConnectionError,)
    except ImportError:  # pragma: no cover - pika comes with dramatiq[rabbitmq]
        pass
    if not isinstance(exc, unreachable):
        return None
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200] or type(exc).__name__


def _broker_url() -> str:
    from settings import get_settings, mask_url

    return mask_url(get_settings().broker_url)
