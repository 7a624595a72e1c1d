"""The dashboard's Flask app: login, who may do what, security headers, health, metrics.

Pages need a login; the API also takes ``Authorization: Bearer WEB_API_TOKEN``.  The session is
Flask's signed cookie ``worker_session`` (HttpOnly, SameSite=Strict, signed with the Authenticator's
key so every replica accepts it).  Every state-changing request made with the cookie needs the CSRF
token (Flask-WTF; form field ``csrf`` or header ``X-CSRF-Token``); bearer calls carry no cookie, so no
other site can make them.  A viewer gets 403 on every state change.  The pages are the blueprints of
web.views (the live queues are web.views.queues: dramatiq-dashboard, mounted there until the fourth round,
counted failures its own way and named workers by ids nothing else showed).

The login form carries a CSRF token too (a cross-site post must not log a browser into the attacker's
account), and a login runs its password check only when web.throttle's HashGate has a slot (503 at once
otherwise).  No page has inline script: the Content-Security-Policy allows scripts from this site only
(``/static/``), so a string that escapes somewhere still cannot run.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from datetime import timedelta
from typing import cast
from urllib.parse import urlencode

from flask import Flask, Response, g, render_template, request, session
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf
from werkzeug.exceptions import HTTPException

from worker_service.web import formatting
from worker_service.web.auth import COOKIE, Principal
from worker_service.web.redirects import local_path, same_origin
from worker_service.web.services import Services, WSGIApp
from worker_service.web.sessions import DashboardSessions, SessionSecret
from worker_service.web.throttle import Refusal
from worker_service.web.users import account_of
from worker_service.web.views import (
    IdConverter,
    assets,
    failed,
    fleet,
    graph,
    json_response,
    outcome_events,
    queues,
    see_other,
    text,
)

logger = logging.getLogger(__name__)
PUBLIC = {"live", "ready", "metrics", "login", "static"}  # endpoints that need no login
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
}


def create_app(services: Services) -> Flask:
    """The dashboard for ``services``, a WSGI app (web.serve runs it under waitress)."""
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    auth = services.auth
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32),  # replaced on each request by the sessions' key (web.sessions)
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=auth.session_seconds if auth else 8 * 3600),
        SESSION_REFRESH_EACH_REQUEST=False,  # a session ends its lifetime after the login, not after the last click
        MAX_CONTENT_LENGTH=1_000_000,
        # checked by authorize() for cookie sessions only: a bearer call has no cookie to ride on
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_FIELD_NAME="csrf",
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.extensions["worker"] = services
    app.url_map.converters["id"] = IdConverter
    formatting.register(app)
    session_secret = SessionSecret(auth.secret if auth else None, lambda: services.limiter_client)
    if auth is not None:
        app.session_interface = DashboardSessions(session_secret, auth)
    csrf = CSRFProtect(app)
    for blueprint in (
        fleet.blueprint,
        failed.blueprint,
        assets.blueprint,
        outcome_events.blueprint,
        graph.blueprint,
        queues.blueprint,
    ):
        app.register_blueprint(blueprint)

    def identify() -> Principal | Refusal | None:
        remote = request.remote_addr or "-"
        if auth is None:
            return Principal("local", remote, via="local")
        authorization = request.headers.get("Authorization")
        if authorization and authorization.startswith("Bearer "):
            address = auth.client_address(remote, request.headers)
            refusal = services.throttle.attempt("bearer", None, address)
            if refusal is not None:
                return refusal
            bearer = auth.bearer(authorization, remote)
            if bearer is not None:
                services.throttle.succeeded("bearer", None, address)
            return bearer
        proxied = auth.proxied(request.headers, remote)
        if proxied is not None:
            return proxied
        user, session_id = session.get("user"), session.get("id")
        if (
            not isinstance(user, str)
            or not isinstance(session_id, str)
            or services.session_revoked(session_id)
        ):
            return None
        # a named user is read again on every request (one read): a removal, a demotion or a password change
        # since this session's login applies at once
        account = account_of(user) if session.get("named") else None
        if session.get("named") and account is None:
            return None
        stamp = auth.stamp(user, session_secret.current(), account.password_hash if account else None)
        if stamp is None or not hmac.compare_digest(stamp, str(session.get("stamp", ""))):
            return None
        return Principal(f"user:{user}", remote, role=account.role if account else "operator")

    @app.before_request
    def authorize() -> Response | None:
        if request.endpoint in PUBLIC:
            return None
        api = request.path.startswith("/api/")
        principal = identify()
        if isinstance(principal, Refusal):
            return too_many(api, principal)
        if principal is None:
            if api:
                return json_response({"error": "authentication required"}, 401)
            return see_other("/login?" + urlencode({"next": request.path}))
        g.principal = principal
        if request.method in ("GET", "HEAD"):
            return None
        if principal.via != "token":
            try:
                csrf.protect()
            except CSRFError:
                return refuse(api, "missing or wrong CSRF token")
            if not from_this_site():
                return refuse(api, "the request came from another site")
        if not principal.can_change and request.endpoint != "logout":
            return refuse(api, f"{principal.name} is a viewer: reading only")
        return None

    def from_this_site() -> bool:
        """The cookie rides along on a request another site makes: where the browser says it came from, that
        must be here (Django's rule; a missing header leaves the decision to the token).  Behind a proxy that
        terminates TLS, "here" is the https origin the proxy serves."""
        ours = (
            auth.public_origin(
                request.remote_addr or "-", request.headers, request.host_url, request.is_secure
            )
            if auth
            else request.host_url
        )
        return same_origin(request.headers.get("Origin") or request.headers.get("Referer"), ours)

    def too_many(api: bool, refusal: Refusal) -> Response:
        response = json_response({"error": refusal.reason}, 429) if api else text(f"{refusal.reason}.", 429)
        response.headers["Retry-After"] = str(refusal.retry_after_s)
        return response

    def refuse(api: bool, reason: str) -> Response:
        return json_response({"error": reason}, 403) if api else text(f"Forbidden: {reason}.", 403)

    @app.context_processor
    def layout() -> dict[str, object]:
        principal = g.get("principal")
        return {"principal": principal, "csrf": generate_csrf() if principal else ""}

    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        message = error.description or error.name
        if request.path.startswith("/api/"):
            return json_response({"error": message}, error.code or 500)
        return text(message, error.code or 500)

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> Response:  # one bad request must not take the server down
        logger.exception("dashboard error on %s %s", request.method, request.path)
        if request.path.startswith("/api/"):  # an API client parses JSON, whatever went wrong
            return json_response({"error": "internal error; see the dashboard logs"}, 500)
        return text("Internal error; see the dashboard logs.", 500)

    @app.get("/healthz", endpoint="live")
    def live() -> Response:
        return json_response(services.health.live())

    @app.get("/readyz", endpoint="ready")
    def ready() -> Response:
        state = services.health.ready()
        return json_response(state, 200 if state["ready"] else 503)

    @app.get("/metrics", endpoint="metrics")
    def metrics() -> Response:
        if services.metrics_app is None:
            return text("No metrics here.", 404)
        return wsgi(services.metrics_app, request.environ)

    @app.route("/login", methods=["GET", "POST"], endpoint="login")
    def login() -> Response:
        target = local_path(request.values.get("next"))  # never off this site, however a browser reads it

        def page(error: str | None, status: int = 200, headers: dict[str, str] | None = None) -> Response:
            body = render_template(
                "login.html",
                error=error,
                user=request.form.get("user", ""),
                next=target,
                csrf=generate_csrf(),
            )
            return Response(body, status, headers)

        if request.method == "GET" or auth is None:
            return page(None)
        try:  # login CSRF: another site must not log this browser into an account of its choosing
            csrf.protect()
        except CSRFError:
            return page("The form expired or came from another site: log in again.", 403)
        if not from_this_site():
            return page("The form came from another site.", 403)
        user, password = request.form.get("user", ""), request.form.get("password", "")
        address = auth.client_address(request.remote_addr or "-", request.headers)
        if not auth.hash_gate.enter(
            address
        ):  # answered at once and not counted: the server is busy, not wrong
            logger.warning("dashboard login for %r from %s refused: password checks busy", user[:50], address)
            return page(
                "The server is busy checking other logins: try again in a second.", 503, {"Retry-After": "1"}
            )
        try:
            refusal = services.throttle.attempt("login", user, address)
            if (
                refusal is not None
            ):  # answered at once: a sleeping request thread would stall every other user
                logger.warning(
                    "dashboard login for %r from %s refused: %s", user[:50], address, refusal.reason
                )
                return page(
                    f"Too many failed logins: try again in {refusal.retry_after_s} s.",
                    429,
                    {"Retry-After": str(refusal.retry_after_s)},
                )
            role = auth.check_password(user, password)
        finally:
            auth.hash_gate.leave(address)
        if role is None:
            logger.warning("failed dashboard login for %r from %s", user[:50], address)
            return page("Wrong user or password.", 401)
        services.throttle.succeeded("login", user, address)
        session.clear()  # a new session (and CSRF token) for each login: nothing fixed before it survives
        session.permanent = True
        account = account_of(user)
        session.update(
            user=user,
            named=account is not None,
            id=secrets.token_urlsafe(16),
            stamp=auth.stamp(user, session_secret.current(), account.password_hash if account else None),
        )
        logger.info("dashboard login by %s (%s) from %s", user, role, request.remote_addr)
        return see_other(target)

    @app.post("/logout", endpoint="logout")
    def logout() -> Response:
        if isinstance(session.get("id"), str):
            services.revoke_session(session["id"], int(app.permanent_session_lifetime.total_seconds()))
        session.clear()
        return see_other("/login")

    return app


def wsgi(inner: WSGIApp, environ: dict) -> Response:
    """What the WSGI app ``inner`` answers to ``environ``, as a response of ours (so it gets our headers)."""
    return cast(Response, Response.from_app(inner, environ, buffered=True))
