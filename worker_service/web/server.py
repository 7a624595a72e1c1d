"""The dashboard's HTTP server: waitress with every limit set on purpose (docs/security.rst says the threat
behind each).

* ``connection_limit`` (WEB_CONNECTION_LIMIT, 1,000; waitress's default 100 let 105 idle sockets make the
  dashboard, ``/healthz`` included, unreachable), with poll() instead of select() (select stops at fd 1,024)
  and the open-files limit raised to match.
* ``channel_timeout`` (WEB_CHANNEL_TIMEOUT_SECONDS, 30; default 120): an idle keep-alive connection closes.
* a whole request must arrive within WEB_REQUEST_TIMEOUT_SECONDS (20): waitress only times out *idle*
  channels, so a client sending one byte every minute kept its connection forever (slowloris).
  :func:`reap_slow_requests` closes it.
* ``max_request_body_size`` just above the app's own limit (``MAX_BODY_BYTES``): waitress's default read and
  spooled up to 1 GiB to disk before the app answered 413; now a ``Content-Length`` past it is answered 413
  straight after the headers, and a chunked body is cut where it passes it.
* request threads (WEB_THREADS) never sleep: the login throttle and the password-hashing gate answer at once.

Waitress buffers each request whole before a thread runs it, so slow clients hold connections, never
threads.  Even so, the dashboard belongs behind a buffering reverse proxy (docs/security.rst).
"""

from __future__ import annotations

import logging
import resource
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from settings import Settings

logger = logging.getLogger(__name__)
#: the largest request body the app reads (Flask's MAX_CONTENT_LENGTH); waitress refuses bodies past it + 1 KiB
MAX_BODY_BYTES = 1_000_000
MAX_HEADER_BYTES = 64 * 1024


def create_server(app: Flask, settings: Settings) -> Any:
    """A waitress server for ``app`` on WEB_HOST:WEB_PORT with the limits of the module docstring."""
    import waitress

    _raise_open_files_limit(settings.web_connection_limit + 256)
    server = waitress.create_server(
        app,
        host=settings.web_host,
        port=settings.web_port,
        threads=settings.web_threads,
        ident="worker-dashboard",
        # X-Forwarded-For / -Proto / -Host reach the app untouched: it believes them only from WEB_PROXY_ADDRESSES
        # (the client's address for the login throttle, https for the cookie and the origin check), which can be
        # several addresses where waitress's own trusted_proxy takes one
        clear_untrusted_proxy_headers=False,
        connection_limit=settings.web_connection_limit,
        asyncore_use_poll=True,
        channel_timeout=settings.web_channel_timeout_seconds,
        cleanup_interval=max(1, min(30, settings.web_request_timeout_seconds // 4)),
        max_request_body_size=MAX_BODY_BYTES + 1024,
        max_request_header_size=MAX_HEADER_BYTES,
    )
    reap_slow_requests(server, settings.web_request_timeout_seconds)
    return server


def reap_slow_requests(server: Any, timeout_s: float) -> None:
    """Close every connection whose request (headers and body) has been arriving for more than ``timeout_s``,
    checked at each of waitress's maintenance rounds (``cleanup_interval``)."""
    idle_check = server.maintenance

    def maintenance(now: float) -> None:
        idle_check(now)
        for channel in list(server.active_channels.values()):
            partial = channel.request  # the request still being received; None between requests
            seen = getattr(channel, "worker_request_seen", None)
            if partial is None:
                channel.worker_request_seen = None
            elif seen is None or seen[0] is not partial:
                channel.worker_request_seen = (partial, now)
            elif now - seen[1] > timeout_s:
                logger.info(
                    "dashboard: closing a connection from %s whose request took over %g s to arrive",
                    channel.addr[0] if channel.addr else "-",
                    timeout_s,
                )
                channel.will_close = True

    server.maintenance = maintenance


def _raise_open_files_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        logger.warning(
            "dashboard: open files limited to %d; WEB_CONNECTION_LIMIT needs about %d", target, wanted
        )
