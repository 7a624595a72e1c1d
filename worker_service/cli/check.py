"""``worker check`` (configuration, broker, database) and ``worker migrate``."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlsplit

from settings import Settings, SettingsError, get_settings, is_loopback_host, mask_url
from worker_service.cli import common
from worker_service.observability.health import HealthChecks, redis_probe_client


def _sentinel_report(settings: Settings) -> str | None:
    """For a redis+sentinel:// BROKER_URL: the master the sentinels name, how many answered, its replicas."""
    import redis
    from worker_contracts.redis_urls import parse_sentinel_url

    target = parse_sentinel_url(settings.broker_url)
    if target is None:
        return None
    masters, replicas = set(), 0
    answered = 0
    for host, port in target.sentinels:
        client = redis.Redis(
            host=host,
            port=port,
            password=settings.redis_sentinel_password,
            socket_timeout=settings.redis_sentinel_timeout_seconds,
            socket_connect_timeout=settings.redis_sentinel_timeout_seconds,
        )
        try:
            address: Any = client.sentinel_get_master_addr_by_name(target.master)
            replicas = max(replicas, len(client.sentinel_slaves(target.master)))
            answered += 1
            if isinstance(address, tuple):
                host_name = address[0].decode() if isinstance(address[0], bytes) else address[0]
                masters.add(f"{host_name}:{address[1]}")
        except redis.RedisError:
            continue
        finally:
            client.close()
    return (
        f"sentinel: master {target.master} at {', '.join(sorted(masters)) or 'unknown'}; "
        f"{answered}/{len(target.sentinels)} sentinels answered; {replicas} replica(s)"
    )


def _redis_durability(settings: Settings, warnings: list[str]) -> None:
    """Warnings for a Redis that would lose or evict queued work (readiness does not look at these)."""
    client = redis_probe_client(settings, 3)
    try:
        config = {
            **client.config_get("appendonly"),
            **client.config_get("appendfsync"),
            **client.config_get("maxmemory-policy"),
        }
    except Exception:  # noqa: BLE001 - managed Redis may forbid CONFIG
        warnings.append("cannot read Redis CONFIG; make sure appendonly=yes and maxmemory-policy=noeviction")
        return
    finally:
        client.close()
    if config.get("appendonly") != "yes":
        warnings.append(
            "Redis appendonly is off: queued messages are lost if Redis restarts "
            "(set appendonly yes, appendfsync everysec)"
        )
    if config.get("maxmemory-policy", "noeviction") != "noeviction":
        warnings.append(
            f"Redis maxmemory-policy is {config['maxmemory-policy']}: Redis may evict queued "
            "messages (set maxmemory-policy noeviction)"
        )


def _rabbitmq_queues(settings: Settings, problems: list[str], facts: list[str]) -> None:
    """Declare the contracts' queues as the workers will (a vhost of classic queues refuses quorum)."""
    from worker_contracts import CONTRACTS

    from worker_service.brokers import build_broker
    from worker_service.brokers.rabbitmq import QueueTypeMismatch, ReliableRabbitmqBroker

    broker = build_broker(settings, [])
    assert isinstance(broker, ReliableRabbitmqBroker)
    try:
        for queue in sorted({queue for queue, _ in CONTRACTS.values()}):
            broker.declare_queue(queue, ensure=True)
        nodes = len(settings.broker_url.split(";"))
        limit = (
            f", delivery limit {settings.crash_loop_limit}"
            if settings.rabbitmq_queue_type == "quorum"
            else ""
        )
        facts.append(f"rabbitmq: {nodes} node(s) in BROKER_URL; {settings.rabbitmq_queue_type} queues{limit}")
    except QueueTypeMismatch as exc:
        problems.append(str(exc))
    finally:
        broker.close()


def cmd_check(args: argparse.Namespace) -> int:
    try:
        settings = get_settings()
    except SettingsError as exc:
        common.err(f"PROBLEM {exc}")
        return 1
    problems: list[str] = []
    warnings: list[str] = []
    facts: list[str] = []  # what was found, printed after the verdict
    checks = HealthChecks(settings)  # the same checks as the readiness probes
    reachable, detail = checks.broker_ok(timeout_s=3)
    if not reachable:
        problems.append(f"broker {mask_url(settings.broker_url)} unreachable: {detail}")
    elif settings.broker_kind == "redis":
        _redis_durability(settings, warnings)
        for queue, url in sorted(settings.shard_urls.items()):
            facts.append(f"shard: queue {queue} on {mask_url(url)}")
        sentinel = _sentinel_report(settings)
        if sentinel is not None:
            facts.append(sentinel)
    else:
        _rabbitmq_queues(settings, problems, facts)
    broker_host = urlsplit(settings.broker_url).hostname
    if settings.database_url.startswith("sqlite") and not is_loopback_host(broker_host):
        warnings.append(
            "SQLite with a non-loopback broker: workers on several hosts need PostgreSQL "
            "(DATABASE_URL=postgresql://...)"
        )
    try:
        from worker_service.database import init_database

        init_database(settings.database_url, statement_timeout_ms=settings.database_statement_timeout_ms)
        usable, detail = checks.database_ok(schema_must_be_current=False)
    except Exception as exc:  # noqa: BLE001
        usable, detail = False, str(exc)
    if not usable:
        problems.append(f"database {mask_url(settings.database_url)} unusable: {detail}")
    elif detail != "ok":
        warnings.append(f"database {detail}")
    from worker_service.assets.ocr import unavailable_reason

    ocr_problem = unavailable_reason(settings.ocr_languages)
    if ocr_problem:
        warnings.append(
            f"OCR unavailable: {ocr_problem}; scanned pages and images end extracted with no_text "
            "(no_text_reason ocr_unavailable)"
        )
    elif unavailable_reason("osd"):
        warnings.append(
            "Tesseract's orientation data (osd) is missing: scans fed in sideways or upside down are "
            "read as they lie (Debian: apt-get install tesseract-ocr-osd)"
        )
    if not settings.openrouter_api_key:
        warnings.append(
            "knowledge extraction is off: OPENROUTER_API_KEY is not set, so every asset's knowledge "
            "ends skipped and no graph is built"
        )
    # the verdict first, then what it rests on; the settings only when asked (there are over a hundred)
    verdict = f"{len(problems)} problem(s)" if problems else "OK"
    common.out(verdict + (f", {len(warnings)} warning(s)" if warnings else ""))
    for line in problems:
        common.out(f"PROBLEM {line}")
    for line in warnings:
        common.out(f"WARN {line}")
    for line in facts:
        common.out(line)
    if args.verbose:
        common.out("effective configuration (secrets masked):")
        for key, value in settings.masked().items():
            common.out(f"  {key}={'' if value is None else value}")
    elif not problems:
        common.out("(worker check --verbose prints the effective settings, secrets masked)")
    return 1 if problems else 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from worker_service.database import current_version, migrate

    common.init(common.settings())
    applied = migrate()
    common.out(
        f"schema version {current_version()}" + (f" (applied {applied})" if applied else " (up to date)")
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser(
        "check",
        help="check configuration, broker, database and tools; the verdict first",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Checks the settings, reaches the broker and the database as the workers "
        "would, and names what is missing (OCR, the OpenRouter key).  Exit 1 on a "
        "PROBLEM; WARN lines do not fail it.",
        epilog="examples:\n  worker check\n  worker check --verbose   (and every effective "
        "setting, secrets masked)",
    )
    check.add_argument("-v", "--verbose", action="store_true", help="print the effective settings too")
    check.set_defaults(func=cmd_check)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
