"""``worker web``: the operators' dashboard, a Flask app (web.app) served by waitress (a production WSGI server).

``make_app(settings, insecure_local)`` builds the app; ``serve`` runs it on
WEB_HOST:WEB_PORT.  Without WEB_PASSWORD, WEB_API_TOKEN or WEB_PROXY_USER_HEADER it
refuses to start, unless bound to 127.0.0.1 with ``--insecure-local``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, make_wsgi_app

from settings import Settings

if TYPE_CHECKING:
    from flask import Flask

logger = logging.getLogger(__name__)


class InsecureConfiguration(Exception):
    pass


def make_app(settings: Settings, *, insecure_local: bool = False) -> Flask:
    from worker_service.brokers import build_broker, make_redis_client, make_shard_clients
    from worker_service.observability.health import HealthChecks
    from worker_service.web.app import create_app
    from worker_service.web.auth import Authenticator
    from worker_service.web.metrics import BrokerCollector
    from worker_service.web.services import Services

    if not settings.web_password and not settings.web_api_token and not settings.web_proxy_user_header:
        if not (insecure_local and settings.web_host == "127.0.0.1"):
            raise InsecureConfiguration(
                "refusing to start the dashboard without WEB_PASSWORD, WEB_API_TOKEN or WEB_PROXY_USER_HEADER; "
                "for a local look only, bind WEB_HOST=127.0.0.1 and pass --insecure-local"
            )
        auth = None
        logger.warning("dashboard running WITHOUT authentication (--insecure-local on 127.0.0.1)")
    else:
        from worker_service.web.sessions import MIN_SECRET_LENGTH
        from worker_service.web.users import MIN_PASSWORD_LENGTH

        if settings.web_password is not None and len(settings.web_password) < MIN_PASSWORD_LENGTH:
            raise InsecureConfiguration(f"WEB_PASSWORD must have at least {MIN_PASSWORD_LENGTH} characters")
        if settings.web_proxy_user_header and not settings.web_proxy_addresses.strip():
            raise InsecureConfiguration(
                "WEB_PROXY_USER_HEADER needs WEB_PROXY_ADDRESSES: the addresses of the proxies "
                "whose header is believed (from anyone else it would log anyone in)"
            )
        if settings.web_session_secret is not None and len(settings.web_session_secret) < MIN_SECRET_LENGTH:
            raise InsecureConfiguration(
                f"WEB_SESSION_SECRET must have at least {MIN_SECRET_LENGTH} characters "
                "(or leave it unset: a random key is generated and kept in Redis)"
            )
        auth = Authenticator(
            user=settings.web_user,
            password=settings.web_password,
            api_token=settings.web_api_token,
            secret=settings.web_session_secret,
            session_hours=settings.web_session_hours,
            login_slots=settings.web_login_concurrency,
            proxy_header=settings.web_proxy_user_header,
            proxy_addresses=frozenset(
                a.strip() for a in settings.web_proxy_addresses.split(",") if a.strip()
            ),
        )
    broker = build_broker(settings, [])
    registry = CollectorRegistry()
    registry.register(
        BrokerCollector(
            make_redis_client(settings) if settings.broker_kind == "redis" else None,
            spend_client=make_redis_client(settings, settings.ratelimit_url),
            daily_budget_usd=settings.openrouter_daily_budget_usd,
            shards=make_shard_clients(settings),
        )
    )
    return create_app(
        Services(broker=broker, auth=auth, health=HealthChecks(settings), metrics_app=make_wsgi_app(registry))
    )


def serve(settings: Settings, *, insecure_local: bool = False) -> None:
    from worker_service.web.server import create_server

    server = create_server(make_app(settings, insecure_local=insecure_local), settings)
    logger.info("dashboard on http://%s:%d/", settings.web_host, settings.web_port)
    server.run()
