"""The dashboard WSGI app: failed messages, audit trail, live queues, JSON API, health, metrics.

Pages need a login (WEB_PASSWORD), the API also takes ``Authorization:
Bearer WEB_API_TOKEN``.  Every state-changing request made with the session
cookie needs the CSRF token.  dramatiq-dashboard is mounted read-only at
``/queues/`` behind the same login: its own requeue/delete would bypass the
dead-letter store and the audit log, so only GET reaches it.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import dramatiq

from database.models import iso
from database.queries import asset_graph, asset_record, asset_text
from dead_letter_store import ERROR_TYPES, DeadLetterStore, Filter, to_public
from web.auth import COOKIE, Authenticator, Principal
from web.health import HealthChecks
from web.templates import ENV

logger = logging.getLogger(__name__)
PAGE_SIZE = 50
WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


@dataclass
class Request:
    environ: dict[str, Any]
    method: str = ""
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)
    form: dict[str, list[str]] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)
    remote: str = "-"

    @classmethod
    def from_environ(cls, environ: dict[str, Any]) -> Request:
        request = cls(environ, environ.get("REQUEST_METHOD", "GET").upper(), environ.get("PATH_INFO", "/") or "/")
        request.query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        request.cookies = {k: m.value for k, m in cookie.items()}
        request.remote = environ.get("REMOTE_ADDR", "-")
        if request.method == "POST" and environ.get("CONTENT_TYPE", "").startswith(
                "application/x-www-form-urlencoded"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(min(length, 1_000_000)).decode("utf-8", "replace")
            request.form = parse_qs(body, keep_blank_values=True)
        return request

    def field(self, name: str, default: str = "") -> str:
        values = self.form.get(name)
        return values[-1] if values else default

    def header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))


@dataclass
class Response:
    body: bytes | str = b""
    status: str = "200 OK"
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "text/html; charset=utf-8"

    def __call__(self, start_response: Callable) -> list[bytes]:
        body = self.body.encode() if isinstance(self.body, str) else self.body
        headers = [("Content-Type", self.content_type), ("Content-Length", str(len(body))),
                   ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                   ("Referrer-Policy", "same-origin"), ("Cache-Control", "no-store"),
                   ("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; "
                                               "script-src 'unsafe-inline'; frame-ancestors 'none'"),
                   *self.headers]
        start_response(self.status, headers)
        return [body]


def json_response(data: Any, status: str = "200 OK") -> Response:
    return Response(json.dumps(data, ensure_ascii=False, default=str), status, content_type="application/json")


def redirect(location: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(b"", "303 See Other", [("Location", location), *(headers or [])])


class DashboardApp:
    """Parameters:
      broker: where requeued messages go (and what /queues/ shows).
      auth: an Authenticator, or None for --insecure-local (127.0.0.1 only; every action is by ``local``).
      health: the /healthz and /readyz checks; metrics: a WSGI app for /metrics.
    """

    def __init__(self, *, broker: dramatiq.Broker, auth: Authenticator | None, health: HealthChecks,
                 metrics_app: WSGIApp | None = None) -> None:
        self.broker = broker
        self.store = DeadLetterStore(broker)
        self.auth = auth
        self.health = health
        self.metrics_app = metrics_app
        self.queues_app = self._mount_queues(broker)
        self._limiter_client: Any = None  # Redis of the rate limiter (upstream pauses, spend), made on first use
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Response]]] = [
            ("GET", re.compile(r"/"), self.list_page),
            ("GET", re.compile(r"/dead-letters/(\d+)"), self.detail_page),
            ("POST", re.compile(r"/dead-letters/(\d+)/(requeue|delete)"), self.act_one),
            ("POST", re.compile(r"/dead-letters/bulk"), self.act_bulk),
            ("GET", re.compile(r"/audit"), self.audit_page),
            ("GET", re.compile(r"/api/dead-letters"), self.api_list),
            ("GET", re.compile(r"/api/dead-letters/(\d+)"), self.api_show),
            ("POST", re.compile(r"/api/dead-letters/(\d+)/requeue"), self.api_requeue),
            ("GET", re.compile(r"/api/audit"), self.api_audit),
            ("GET", re.compile(r"/api/assets/([^/]+)"), self.api_asset),
            ("GET", re.compile(r"/api/assets/([^/]+)/text"), self.api_asset_text),
            ("GET", re.compile(r"/api/assets/([^/]+)/graph"), self.api_asset_graph),
            ("GET", re.compile(r"/api/assets/([^/]+)/history"), self.api_asset_history),
            ("GET", re.compile(r"/events"), self.events_page),
            ("POST", re.compile(r"/events/(\d+)/resend"), self.events_resend),
            ("GET", re.compile(r"/api/overview"), self.api_overview),
            ("GET", re.compile(r"/overview"), self.overview_page),
            ("GET", re.compile(r"/assets"), self.asset_search),
            ("GET", re.compile(r"/assets/([^/]+)"), self.asset_page),
            ("GET", re.compile(r"/assets/([^/]+)/text"), self.asset_text_download),
            ("POST", re.compile(r"/overview/queues/([A-Za-z0-9._:-]+)/(pause|resume)"), self.overview_queue),
            ("GET", re.compile(r"/overview/queues/([A-Za-z0-9._:-]+)/purge"), self.purge_confirm),
            ("POST", re.compile(r"/overview/queues/([A-Za-z0-9._:-]+)/purge"), self.purge_page),
            ("POST", re.compile(r"/api/queues/([A-Za-z0-9._:-]+)/purge"), self.api_purge),
            ("POST", re.compile(r"/api/queues/([A-Za-z0-9._:-]+)/(pause|resume)"), self.api_queue_pause),
            ("GET", re.compile(r"/api/events"), self.api_events),
            ("POST", re.compile(r"/api/events/(\d+)/resend"), self.api_events_resend),
        ]

    @staticmethod
    def _mount_queues(broker: dramatiq.Broker) -> WSGIApp | None:
        try:
            from dramatiq.brokers.redis import RedisBroker
            from dramatiq_dashboard import DashboardApp as QueuesApp
            from worker_contracts import CONTRACTS
        except ImportError:
            return None
        if not isinstance(broker, RedisBroker):
            return None  # dramatiq-dashboard only knows the Redis broker
        for queue, _model in CONTRACTS.values():
            broker.declare_queue(queue)
        return QueuesApp(broker=broker, prefix="/queues")

    # --- WSGI entry -------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        request = Request.from_environ(environ)
        try:
            return self.dispatch(request, environ, start_response)
        except Exception:  # noqa: BLE001 - one bad request must not take the server down
            logger.error("dashboard error on %s %s\n%s", request.method, request.path, traceback.format_exc())
            return Response("Internal error; see the dashboard logs.", "500 Internal Server Error",
                            content_type="text/plain")(start_response)

    def dispatch(self, request: Request, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = request.path
        if path == "/healthz":
            return json_response(self.health.live())(start_response)
        if path == "/readyz":
            ready = self.health.ready()
            return json_response(ready, "200 OK" if ready["ready"] else "503 Service Unavailable")(start_response)
        if path == "/metrics" and self.metrics_app is not None:
            return self.metrics_app(environ, start_response)
        if path == "/login":
            return self.login(request)(start_response)
        principal = self.identify(request)
        is_api = path.startswith("/api/")
        if principal is None:
            if is_api:
                return json_response({"error": "authentication required"}, "401 Unauthorized")(start_response)
            return redirect("/login?" + urlencode({"next": path}))(start_response)
        if request.method == "POST" and not self.csrf_ok(request, principal):
            body = {"error": "missing or wrong CSRF token"}
            return (json_response(body, "403 Forbidden") if is_api else
                    Response("Forbidden: missing or wrong CSRF token.", "403 Forbidden",
                             content_type="text/plain"))(start_response)
        if request.method == "POST" and not principal.can_change and path != "/logout":
            body = {"error": f"{principal.name} is a viewer: reading only"}
            return (json_response(body, "403 Forbidden") if is_api else
                    Response("Forbidden: viewers read, they do not change.", "403 Forbidden",
                             content_type="text/plain"))(start_response)
        if path == "/logout" and request.method == "POST":
            return redirect("/login", [("Set-Cookie", f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; "
                                                      "SameSite=Strict")])(start_response)
        if path == "/queues" or path.startswith("/queues/"):
            if self.queues_app is None:
                return Response("Live queues need the Redis broker.", "404 Not Found")(start_response)
            if request.method != "GET":
                return Response("The queue views are read-only; use the failed-messages pages.",
                                "403 Forbidden", content_type="text/plain")(start_response)
            # dramatiq-dashboard routes relative to its mount point and builds links with the prefix
            return self._queues_page(environ, path, principal, start_response)
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if match and method == request.method:
                return handler(request, principal, *match.groups())(start_response)
        return Response("Not found", "404 Not Found", content_type="text/plain")(start_response)

    def _queues_page(self, environ: dict, path: str, principal: Principal,
                     start_response: Callable) -> Iterable[bytes]:
        """dramatiq-dashboard's view inside this dashboard's header and navigation (one layout everywhere)."""
        assert self.queues_app is not None
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            captured.update(status=status, headers=headers)
            return lambda data: None

        body = b"".join(self.queues_app({**environ, "PATH_INFO": path[len("/queues"):] or "/"}, capture))
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        if any(k.lower() == "content-type" and v.startswith("text/html") for k, v in headers):
            nav = ENV.get_template("nav").render(principal=principal, csrf=self.csrf(principal), nav="queues")
            at = body.find(b">", body.find(b"<body")) + 1 if b"<body" in body else 0
            body = body[:at] + nav.encode() + body[at:]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    # --- auth --------------------------------------------------------------------------------
    def identify(self, request: Request) -> Principal | None:
        if self.auth is None:
            return Principal("local", request.remote, "local")
        bearer = self.auth.bearer(request.header("Authorization"), request.remote)
        if bearer is not None:
            return bearer
        return self.auth.session(request.cookies.get(COOKIE), request.remote)

    def csrf_ok(self, request: Request, principal: Principal) -> bool:
        if principal.name.startswith("token:"):
            return True  # bearer calls carry no cookie, so no cross-site request can make them
        token = request.field("csrf") or request.header("X-CSRF-Token")
        if self.auth is None:
            return token == "local"
        return self.auth.csrf_ok(principal, token)

    def csrf(self, principal: Principal) -> str:
        return "local" if self.auth is None else self.auth.csrf_token(principal)

    def login(self, request: Request) -> Response:
        target = request.query.get("next") or request.field("next") or "/"
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        if request.method == "GET" or self.auth is None:
            return self.render("login", None, error=None, user="", next=target)
        user, password = request.field("user"), request.field("password")
        role = self.auth.check_password(user, password, request.remote)
        if role is None:
            logger.warning("failed dashboard login for %r from %s", user[:50], request.remote)
            return Response(ENV.get_template("login").render(principal=None, error="Wrong user or password.",
                                                             user=user, next=target), "401 Unauthorized")
        cookie = (f"{COOKIE}={self.auth.issue(user, role)}; Path=/; HttpOnly; SameSite=Strict; "
                  f"Max-Age={self.auth.session_seconds}")
        logger.info("dashboard login by %s (%s) from %s", user, role, request.remote)
        return redirect(target, [("Set-Cookie", cookie)])

    def render(self, template: str, principal: Principal | None, **context: Any) -> Response:
        return Response(ENV.get_template(template).render(principal=principal,
                                                          csrf=self.csrf(principal) if principal else "",
                                                          **context))

    # --- failed-message pages --------------------------------------------------------------------
    @staticmethod
    def _filter(values: dict[str, str]) -> Filter:
        def day(name: str, plus: int = 0) -> datetime | None:
            raw = values.get(name) or ""
            try:
                return datetime.fromisoformat(raw).replace(tzinfo=None) + timedelta(days=plus) if raw else None
            except ValueError:
                return None

        state = values.get("state", "dead")
        return Filter(actor=values.get("actor") or None, queue=values.get("queue") or None,
                      error_type=values.get("error_type") or None, state=state or None, since=day("since"),
                      until=day("until", plus=1))

    @staticmethod
    def _filter_values(values: dict[str, str]) -> dict[str, str]:
        keys = ("actor", "queue", "error_type", "state", "since", "until")
        return {k: values[k] for k in keys if k in values}

    def list_page(self, request: Request, principal: Principal) -> Response:
        flt = self._filter(request.query)
        page = max(1, int(request.query.get("page", "1") or 1)) if request.query.get("page", "1").isdigit() else 1
        rows = self.store.list(flt, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        any_state = Filter(state=None)
        values = self._filter_values(request.query)
        return self.render(
            "list", principal, nav="dlq", flt=flt, rows=[to_public(r) for r in rows[:PAGE_SIZE]],
            more=len(rows) > PAGE_SIZE, page=page, total=self.store.count(flt),
            by_type=self.store.counts_by("error_type", flt), actors=sorted(self.store.counts_by("actor", any_state)),
            queues=sorted(self.store.counts_by("queue", any_state)), error_types=ERROR_TYPES,
            since=request.query.get("since", ""), until=request.query.get("until", ""),
            qs=urlencode(values), query_items=sorted(values.items()), flash=request.query.get("flash"))

    def detail_page(self, request: Request, principal: Principal, dead_letter_id: str) -> Response:
        row = self.store.get(int(dead_letter_id))
        if row is None:
            return Response("No such dead letter", "404 Not Found", content_type="text/plain")
        record = to_public(row, full=True)
        payload = {"args": record["args"], "kwargs": record["kwargs"], "options": record["options"]}
        for item in record.get("history") or []:
            item["at_iso"] = datetime.fromtimestamp(item.get("at", 0) / 1000, UTC).isoformat(timespec="seconds")
        return self.render("detail", principal, nav="dlq", r=record, flash=request.query.get("flash"),
                           payload=json.dumps(payload, indent=2, ensure_ascii=False, default=str))

    def act_one(self, request: Request, principal: Principal, dead_letter_id: str, action: str) -> Response:
        ident = int(dead_letter_id)
        if action == "requeue":
            done = self.store.requeue([ident], principal.audit_name)
            flash = f"Requeued dead letter {ident}." if done else f"Dead letter {ident} was not dead any more."
        else:
            n = self.store.delete([ident], principal.audit_name)
            flash = f"Deleted dead letter {ident}." if n else f"Dead letter {ident} was not dead any more."
        return redirect(f"/dead-letters/{ident}?" + urlencode({"flash": flash}))

    def act_bulk(self, request: Request, principal: Principal) -> Response:
        action = request.field("action")
        values = {k[2:]: v[-1] for k, v in request.form.items() if k.startswith("f_")}
        back = "/?" + urlencode({**self._filter_values(values)})
        if action in ("requeue", "delete"):
            ids = [int(i) for i in request.form.get("ids", []) if i.isdigit()]
            if not ids:
                return redirect(back + "&" + urlencode({"flash": "Nothing selected."}))
            if action == "requeue":
                n = len(self.store.requeue(ids, principal.audit_name))
            else:
                n = self.store.delete(ids, principal.audit_name)
            return redirect(back + "&" + urlencode({"flash": f"{action.capitalize()}d {n} of {len(ids)} selected."}))
        if action in ("requeue-all", "delete-all"):
            flt = self._filter({**values, "state": "dead"})
            verb = action.split("-")[0]
            if request.field("confirm") != "yes":
                return self.render("confirm", principal, nav="dlq", verb=verb, action=action,
                                   count=self.store.count(flt), query_items=sorted(self._filter_values(values).items()),
                                   qs=urlencode(self._filter_values(values)),
                                   description=json.dumps({k: v for k, v in values.items() if v}))
            if verb == "requeue":
                n = len(self.store.requeue_matching(flt, principal.audit_name))
            else:
                n = self.store.delete_matching(flt, principal.audit_name)
            return redirect(back + "&" + urlencode({"flash": f"{verb.capitalize()}d {n} matching dead letters."}))
        return Response("Unknown action", "400 Bad Request", content_type="text/plain")

    def audit_page(self, request: Request, principal: Principal) -> Response:
        rows = [{"at": iso(a.at), "who": a.who, "action": a.action, "count": a.count, "target": a.target}
                for a in self.store.audit(limit=500)]
        return self.render("audit", principal, nav="audit", rows=rows)

    def events_page(self, request: Request, principal: Principal) -> Response:
        from events import lag, recent
        from settings import get_settings

        pending, age = lag()
        state = request.query.get("state") if request.query.get("state") in ("pending", "delivered") else None
        return self.render("events", principal, nav="events", rows=recent(state), pending=pending, lag=round(age),
                           configured=bool(get_settings().events_webhook_url), flash=request.query.get("flash"))

    def events_resend(self, request: Request, principal: Principal, event_id: str) -> Response:
        from events import resend

        n = resend([int(event_id)], principal.audit_name)
        return redirect("/events?" + urlencode({"flash": f"Event {event_id} will be sent again." if n else
                                                f"No event {event_id}."}))

    # --- JSON API ------------------------------------------------------------------------------------
    def _overview(self) -> dict[str, Any]:
        from brokers import make_redis_client
        from brokers.redis import ReliableRedisBroker
        from settings import get_settings
        from web.overview import overview

        settings = get_settings()
        if self._limiter_client is None:
            self._limiter_client = make_redis_client(settings, settings.ratelimit_url)
        broker = self.broker
        client = broker.client if isinstance(broker, ReliableRedisBroker) else None
        return overview(client, self._limiter_client, settings)

    def api_overview(self, request: Request, principal: Principal) -> Response:
        return json_response(self._overview())

    def overview_page(self, request: Request, principal: Principal) -> Response:
        from web.charts import line_chart

        data = self._overview()
        hour, day = data["throughput"]["last_hour"], data["throughput"]["last_day"]
        context = {"o": data, "can_change": principal.can_change,
                   "chart_hour": line_chart(hour["labels"], {"done": hour["done"], "failed": hour["failed"]},
                                            title="messages per minute, last hour"),
                   "chart_day": line_chart(day["labels"], {"done": day["done"], "failed": day["failed"]},
                                           title="messages per 30 minutes, last day")}
        if request.query.get("partial"):
            return Response(ENV.get_template("overview_body").render(csrf=self.csrf(principal), **context))
        return self.render("overview", principal, nav="overview", flash=request.query.get("flash"), **context)

    def asset_search(self, request: Request, principal: Principal) -> Response:
        asset_id = (request.query.get("id") or "").strip()
        return redirect(f"/assets/{quote(asset_id, safe='')}" if asset_id else "/overview")

    def asset_page(self, request: Request, principal: Principal, asset_id: str) -> Response:
        from database.queries import asset_dead_letters, asset_history, lead_link
        from web.charts import graph_picture

        record = asset_record(asset_id)
        if record is None:
            return Response(f"No asset {asset_id}.", "404 Not Found", content_type="text/plain")
        graph = asset_graph(asset_id)
        picture = graph_picture([e["name"] for e in graph["entities"]],
                                [(r["source"], r["target"]) for r in graph["relations"]]) if graph else ""
        return self.render("asset", principal, nav="assets", a=record, history=asset_history(asset_id) or [],
                           dead=asset_dead_letters(asset_id), text=asset_text(asset_id), graph=graph,
                           picture=picture, lead=lead_link(record.get("crm_lead_id")))

    def asset_text_download(self, request: Request, principal: Principal, asset_id: str) -> Response:
        record = asset_text(asset_id)
        if record is None:
            return Response("No text.", "404 Not Found", content_type="text/plain")
        return Response(record["text"].encode(), "200 OK", [("Content-Disposition",
                                                            f'attachment; filename="{asset_id}.txt"')],
                        content_type="text/plain; charset=utf-8")

    def overview_queue(self, request: Request, principal: Principal, queue: str, action: str) -> Response:
        _status, body = self._set_paused(principal, queue, action)
        return redirect("/overview?" + urlencode({"flash": body.get("error") or f"Queue {queue}: {action}d."}))

    def api_queue_pause(self, request: Request, principal: Principal, queue: str, action: str) -> Response:
        status, body = self._set_paused(principal, queue, action)
        return json_response(body, status)

    def purge_confirm(self, request: Request, principal: Principal, queue: str) -> Response:
        broker = self._known_queue_broker(queue)
        if broker is None:
            return Response(f"No queue {queue} to purge (or not a Redis broker).", "404 Not Found",
                            content_type="text/plain")
        return self.render("purge", principal, nav="overview", queue=queue, count=broker.waiting_count(queue))

    def purge_page(self, request: Request, principal: Principal, queue: str) -> Response:
        status, body = self._purge(principal, queue, request.field("confirm"))
        flash = body.get("error") or f"Purged {body['purged']} message(s) from {queue}."
        return redirect("/overview?" + urlencode({"flash": flash}))

    def api_purge(self, request: Request, principal: Principal, queue: str) -> Response:
        status, body = self._purge(principal, queue, request.query.get("confirm") or request.field("confirm"))
        return json_response(body, status)

    def _known_queue_broker(self, queue: str) -> Any:
        """The Redis broker, if ``queue`` is one the contracts or a worker of the fleet declared; else None."""
        from worker_contracts import CONTRACTS

        from brokers.redis import ReliableRedisBroker

        broker = self.broker
        if not isinstance(broker, ReliableRedisBroker):
            return None
        registered = broker.client.smembers(broker.key("__queues__"))  # every queue a worker consumes
        known = {q for q, _ in CONTRACTS.values()} | {q.decode() if isinstance(q, bytes) else str(q) for q in registered}
        return broker if queue in known else None

    def _purge(self, principal: Principal, queue: str, confirm: str | None) -> tuple[str, dict[str, Any]]:
        """Delete what waits in ``queue`` once the caller confirmed how many go; the asset records of the
        deleted messages end ``failed`` / ``purged`` (else the reconciler would rebuild them); audited."""
        from types import SimpleNamespace

        from database import AuditEntry, session
        from database import tracks as tr

        broker = self._known_queue_broker(queue)
        if broker is None:
            return "404 Not Found", {"error": f"no queue {queue} to purge (or not a Redis broker)"}
        count = broker.waiting_count(queue)
        if confirm != str(count):
            return "409 Conflict", {"error": f"confirm with the number of messages that go: {count}",
                                    "waiting": count}
        purged = broker.purge(queue)
        ended = 0
        with session(transaction=True):
            for data in purged:
                track = tr.TRACKS.get(tr.TRACKED_ACTORS.get(str(data.get("actor_name")), ""))
                kwargs = data.get("kwargs") if isinstance(data.get("kwargs"), dict) else {}
                if track is None or not isinstance(kwargs.get("asset_id"), str):
                    continue
                message = SimpleNamespace(options=data.get("options") or {}, message_id=data.get("message_id"),
                                          message_timestamp=data.get("message_timestamp") or 0)
                ended += tr.fail(track, kwargs["asset_id"], kwargs, tr.generation_of(message), "purged",
                                 f"purged from queue {queue} by {principal.audit_name}")
            AuditEntry.create(who=principal.audit_name, action="queue-purge", target=queue, count=len(purged),
                              detail={"records_failed": ended})
        return "200 OK", {"queue": queue, "purged": len(purged), "records_failed": ended}

    def _set_paused(self, principal: Principal, queue: str, action: str) -> tuple[str, dict[str, Any]]:
        """Pause or resume a queue for the whole fleet (its messages are not started meanwhile); audited."""
        from database import AuditEntry, session

        broker = self._known_queue_broker(queue)
        if broker is None:
            return "404 Not Found", {"error": f"unknown queue {queue} (or not a Redis broker: pausing needs one)"}
        changed = broker.set_paused(queue, action == "pause")
        with session(transaction=True):
            AuditEntry.create(who=principal.audit_name, action=f"queue-{action}", target=queue, count=int(changed))
        return "200 OK", {"queue": queue, "paused": action == "pause", "changed": changed}

    def api_events(self, request: Request, principal: Principal) -> Response:
        from events import lag, recent

        pending, age = lag()
        state = request.query.get("state") if request.query.get("state") in ("pending", "delivered") else None
        return json_response({"pending": pending, "oldest_pending_seconds": round(age, 1), "items": recent(state)})

    def api_events_resend(self, request: Request, principal: Principal, event_id: str) -> Response:
        from events import resend

        n = resend([int(event_id)], principal.audit_name)
        return json_response({"resent": n}) if n else json_response({"error": "not found"}, "404 Not Found")

    def api_list(self, request: Request, principal: Principal) -> Response:
        flt = self._filter(request.query)
        limit = min(1000, int(request.query.get("limit", "100"))) if request.query.get("limit", "100").isdigit() else 100
        offset = int(request.query.get("offset", "0")) if request.query.get("offset", "0").isdigit() else 0
        rows = [to_public(r) for r in self.store.list(flt, limit=limit, offset=offset)]
        return json_response({"total": self.store.count(flt), "items": rows})

    def api_show(self, request: Request, principal: Principal, dead_letter_id: str) -> Response:
        row = self.store.get(int(dead_letter_id))
        return json_response(to_public(row, full=True)) if row else json_response({"error": "not found"},
                                                                                 "404 Not Found")

    def api_requeue(self, request: Request, principal: Principal, dead_letter_id: str) -> Response:
        done = self.store.requeue([int(dead_letter_id)], principal.audit_name)
        if done:
            return json_response({"requeued": done})
        exists = self.store.get(int(dead_letter_id)) is not None
        return json_response({"error": "not dead (already requeued or deleted)" if exists else "not found"},
                             "409 Conflict" if exists else "404 Not Found")

    def api_audit(self, request: Request, principal: Principal) -> Response:
        return json_response([{"at": iso(a.at), "who": a.who, "action": a.action, "count": a.count,
                               "target": a.target, "detail": a.detail} for a in self.store.audit(limit=500)])

    def api_asset(self, request: Request, principal: Principal, asset_id: str) -> Response:
        record = asset_record(asset_id)
        return json_response(record) if record else json_response({"error": "unknown asset"}, "404 Not Found")

    def api_asset_text(self, request: Request, principal: Principal, asset_id: str) -> Response:
        record = asset_text(asset_id)
        return json_response(record) if record else json_response({"error": "no text"}, "404 Not Found")

    def api_asset_history(self, request: Request, principal: Principal, asset_id: str) -> Response:
        from database.queries import asset_history

        rows = asset_history(asset_id)
        return json_response(rows) if rows is not None else json_response({"error": "unknown asset"},
                                                                           "404 Not Found")

    def api_asset_graph(self, request: Request, principal: Principal, asset_id: str) -> Response:
        record = asset_graph(asset_id)
        return json_response(record) if record else json_response({"error": "unknown asset"}, "404 Not Found")
