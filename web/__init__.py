"""``worker web``: the failed-messages dashboard served by waitress (a production WSGI server).

``make_app(settings, insecure_local)`` builds the app; ``serve`` runs it on
WEB_HOST:WEB_PORT.  Without WEB_PASSWORD and WEB_API_TOKEN it refuses to
start, unless bound to 127.0.0.1 with ``--insecure-local``.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, make_wsgi_app

from settings import Settings

logger = logging.getLogger(__name__)


class InsecureConfiguration(Exception):
    pass


def make_app(settings: Settings, *, insecure_local: bool = False):  # -> DashboardApp
    from brokers import build_broker, make_redis_client
    from web.app import DashboardApp
    from web.auth import Authenticator
    from web.health import HealthChecks
    from web.metrics import BrokerCollector

    if not settings.web_password and not settings.web_api_token:
        if not (insecure_local and settings.web_host == "127.0.0.1"):
            raise InsecureConfiguration(
                "refusing to start the dashboard without WEB_PASSWORD or WEB_API_TOKEN; for a local look only, "
                "bind WEB_HOST=127.0.0.1 and pass --insecure-local")
        auth = None
        logger.warning("dashboard running WITHOUT authentication (--insecure-local on 127.0.0.1)")
    else:
        auth = Authenticator(user=settings.web_user, password=settings.web_password,
                             api_token=settings.web_api_token, secret=settings.web_session_secret,
                             session_hours=settings.web_session_hours)
    broker = build_broker(settings, [])
    registry = CollectorRegistry()
    registry.register(BrokerCollector(make_redis_client(settings) if settings.broker_kind == "redis" else None,
                                      spend_client=make_redis_client(settings, settings.ratelimit_url),
                                      daily_budget_usd=settings.openrouter_daily_budget_usd))
    return DashboardApp(broker=broker, auth=auth, health=HealthChecks(settings),
                        metrics_app=make_wsgi_app(registry))


def serve(settings: Settings, *, insecure_local: bool = False) -> None:
    import waitress

    app = make_app(settings, insecure_local=insecure_local)
    logger.info("dashboard on http://%s:%d/", settings.web_host, settings.web_port)
    waitress.serve(app, host=settings.web_host, port=settings.web_port, threads=settings.web_threads,
                   ident="worker-dashboard", clear_untrusted_proxy_headers=True)
