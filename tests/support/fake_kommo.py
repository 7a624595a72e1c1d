"""A fake Kommo API v4 that behaves as Kommo documents (docs/fakes.rst lists the fact behind each behaviour).

Contacts, leads and notes (batch create with JSON arrays, HAL answers, 204
for empty lists); ``query`` searches the filled fields (name, custom field
values) and never tags; ``filter[name]`` matches names exactly; ``GET
/{entity}/{id}``; PATCH replaces each listed custom field's values and, with
``_embedded.tags``, the tag list, while ``tags_to_add`` / ``tags_to_delete``
add and remove; OAuth2 with rotating single-use refresh tokens; 429 above
``rate`` requests in any second per token (plain text on every other one),
and after ``block_after`` consecutive 429s the IP block: 403 with nginx's HTML
page; ``forbidden_detail`` answers 403 problem+json (no rights, a disabled
account); ``unauthorized_until`` rejects every token with 401 until then
(monotonic time); problem+json validation errors (a negative lead price);
``latency`` delays every answer; ``drop_after_create`` stores that many lead
or contact creations and closes the connection without an answer;
``hang_after_create`` accepts a note and then does not answer for a while, to
kill the worker between acceptance and ack.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.httpserver import QuietHandler, serve, stop

NGINX_403 = (
    b"<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>403 Forbidden</h1>"
    b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


class FakeKommo:
    def __init__(
        self,
        *,
        rate: int = 7,
        block_after: int | None = None,
        long_lived_token: str | None = "llt-1",
        client_id: str = "cid",
        client_secret: str = "secret",
        refresh_token: str = "rt-0",
    ) -> None:
        self.rate = rate
        self.block_after = block_after
        self.tokens = {long_lived_token} if long_lived_token else set()
        self.client = (client_id, client_secret)
        self.refresh_tokens = {refresh_token}
        self.refreshes: list[str] = []
        self.ids = itertools.count(1000)
        self.store: dict[str, dict[int, dict[str, Any]]] = {"contacts": {}, "leads": {}, "notes": {}}
        self.requests: list[tuple[float, str, str, int]] = []
        self.arrivals: deque[float] = deque()
        self.consecutive_429 = 0
        self.blocked = False
        self.hang_after_create: float = 0.0
        self.latency: float = 0.0  # seconds every answer takes (Kommo answers in 0.1-0.8 s)
        self.unauthorized_until: float = 0.0  # time.monotonic() before which every token gets 401
        self.forbidden_detail: str | None = None  # a 403 that is not a block (rights, a disabled account)
        self.drop_after_create = 0  # creations of leads/contacts accepted, then the connection dropped
        self.lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, payload, ctype = fake.handle(method, self.path, self.headers, raw)
                if fake.latency:
                    time.sleep(fake.latency)
                data = (
                    payload
                    if isinstance(payload, bytes)
                    else (b"" if payload is None else json.dumps(payload).encode())
                )
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if data:
                    self.wfile.write(data)
                hang = getattr(self, "_hang", 0)
                if hang:
                    time.sleep(hang)

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def do_PATCH(self) -> None:  # noqa: N802
                self._handle("PATCH")

        class HangingHandler(Handler):
            def _handle(self, method: str) -> None:
                if (
                    method == "POST"
                    and re.fullmatch(r"/api/v4/(leads|contacts)", self.path)
                    and fake.drop_after_create
                ):
                    length = int(self.headers.get("Content-Length") or 0)
                    raw = self.rfile.read(length)
                    status, _, _ = fake.handle(
                        method, self.path, self.headers, raw
                    )  # accepted and stored ...
                    if status < 300:
                        with fake.lock:
                            fake.drop_after_create -= 1
                    self.close_connection = True  # ... and the answer never comes: the connection is dropped
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if method == "POST" and "/notes" in self.path and fake.hang_after_create:
                    length = int(self.headers.get("Content-Length") or 0)
                    raw = self.rfile.read(length)
                    fake.handle(method, self.path, self.headers, raw)  # accepted and stored ...
                    time.sleep(fake.hang_after_create)  # ... but the answer never comes in time
                    return
                super()._handle(method)

        self.server = serve(HangingHandler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}"

    # --- request handling --------------------------------------------------------------
    def handle(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, Any, str]:
        now = time.monotonic()
        url = urlsplit(path)
        with self.lock:
            status, payload = self._route(method, url.path, parse_qs(url.query), headers, raw, now)
            self.requests.append((now, method, url.path, status))
        if isinstance(payload, bytes):
            return status, payload, "text/html" if payload.startswith(b"<html") else "text/plain"
        ctype = "application/problem+json" if status >= 400 else "application/hal+json"
        return status, payload, ctype

    def _problem(self, status: int, detail: str, **extra: Any) -> tuple[int, Any]:
        return status, {
            "title": {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}.get(
                status, "Error"
            ),
            "type": f"https://httpstatus.es/{status}",
            "status": status,
            "detail": detail,
            **extra,
        }

    def _route(
        self, method: str, path: str, query: dict, headers: Any, raw: bytes, now: float
    ) -> tuple[int, Any]:
        if path == "/oauth2/access_token":
            return self._token(json.loads(raw or b"{}"))
        if self.blocked:  # the IP block is nginx's own page, not JSON (amocrm-api-php issue 434)
            return 403, NGINX_403
        while self.arrivals and self.arrivals[0] <= now - 1.0:
            self.arrivals.popleft()
        self.arrivals.append(now)
        if len(self.arrivals) > self.rate:
            self.consecutive_429 += 1
            if self.block_after and self.consecutive_429 >= self.block_after:
                self.blocked = True
            if self.consecutive_429 % 2:
                return 429, b"Too Many Requests"
            return self._problem(429, "Too many requests")
        self.consecutive_429 = 0
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens or now < self.unauthorized_until:
            return self._problem(401, "Unauthorized")
        if self.forbidden_detail:
            return self._problem(403, self.forbidden_detail)
        body = json.loads(raw) if raw else None
        m = re.fullmatch(r"/api/v4/(contacts|leads)", path)
        if m and method == "GET":
            return self._list(m.group(1), query)
        if m and method == "POST":
            return self._create(m.group(1), body or [])
        m = re.fullmatch(r"/api/v4/(contacts|leads)/(\d+)", path)
        if m and method in ("GET", "PATCH"):
            item = self.store[m.group(1)].get(int(m.group(2)))
            if item is None:
                return (204, None) if method == "GET" else self._problem(404, "Not found")
            if method == "GET":
                return 200, item
            self._patch(item, body or {})
            return 200, {"id": item["id"], "updated_at": int(time.time())}
        m = re.fullmatch(r"/api/v4/(leads|contacts)/(\d+)/notes", path)
        if m and method == "GET":
            page, limit = int(query.get("page", ["1"])[0]), int(query.get("limit", ["250"])[0])
            notes = [
                n
                for n in self.store["notes"].values()
                if n["entity_type"] == m.group(1) and n["entity_id"] == int(m.group(2))
            ]
            chunk = notes[(page - 1) * limit : page * limit]
            return (204, None) if not chunk else (200, {"_page": page, "_embedded": {"notes": chunk}})
        if m and method == "POST":
            created = []
            for i, note in enumerate(body or []):
                nid = next(self.ids)
                self.store["notes"][nid] = {
                    "id": nid,
                    "entity_id": int(m.group(2)),
                    "entity_type": m.group(1),
                    "note_type": note.get("note_type"),
                    "params": note.get("params", {}),
                }
                created.append({"id": nid, "entity_id": int(m.group(2)), "request_id": str(i)})
            return 200, {"_embedded": {"notes": created}}
        return self._problem(404, "Not found")

    def _token(self, body: dict) -> tuple[int, Any]:
        if (body.get("client_id"), body.get("client_secret")) != self.client or body.get(
            "grant_type"
        ) != "refresh_token":
            return 400, {}
        if body.get("refresh_token") not in self.refresh_tokens:
            return 400, {"hint": "Token has been revoked", "title": "Invalid request", "status": 400}
        self.refresh_tokens.discard(body["refresh_token"])  # single use
        number = len(self.refreshes) + 1
        access, refresh = f"at-{number}", f"rt-{number}"
        self.refreshes.append(body["refresh_token"])
        self.tokens = {t for t in self.tokens if not t.startswith("at-")} | {access}
        self.refresh_tokens.add(refresh)
        return 200, {
            "token_type": "Bearer",
            "expires_in": 86400,
            "server_time": int(time.time()),
            "access_token": access,
            "refresh_token": refresh,
        }

    @staticmethod
    def _patch(item: dict, body: dict) -> None:
        """Kommo's PATCH: listed fields replace, unlisted ones stay; tags replace or are added/removed."""
        for key, value in body.items():
            if key in ("id", "custom_fields_values", "_embedded", "tags_to_add", "tags_to_delete"):
                continue
            item[key] = value
        fields = item.setdefault("custom_fields_values", [])
        for sent in body.get("custom_fields_values") or []:
            ident = sent.get("field_code") or sent.get("field_id")
            fields[:] = [f for f in fields if (f.get("field_code") or f.get("field_id")) != ident]
            fields.append(sent)
        embedded = item.setdefault("_embedded", {})
        if "tags" in (body.get("_embedded") or {}):
            embedded["tags"] = list(body["_embedded"]["tags"])
        tags = embedded.setdefault("tags", [])
        for tag in body.get("tags_to_add") or []:
            if tag.get("name") not in {t.get("name") for t in tags}:
                tags.append({"name": tag["name"]})
        removed = {t.get("name") for t in body.get("tags_to_delete") or []}
        tags[:] = [t for t in tags if t.get("name") not in removed]

    @staticmethod
    def _searchable(item: dict) -> str:
        """What ``query`` searches: the entity's filled fields (its name, custom field values), not its tags."""
        values = " ".join(
            str(v.get("value")) for f in item.get("custom_fields_values") or [] for v in f["values"]
        )
        return f"{item.get('name', '')} {values}".lower()

    def _list(self, kind: str, query: dict) -> tuple[int, Any]:
        term = query.get("query", [""])[0].lower()
        names = {v for k, vs in query.items() if re.fullmatch(r"filter\[name\](\[\d*\])?", k) for v in vs}
        items = [
            i
            for i in self.store[kind].values()
            if (not term or term in self._searchable(i)) and (not names or i.get("name") in names)
        ]
        return (204, None) if not items else (200, {"_page": 1, "_embedded": {kind: items}})

    def _create(self, kind: str, body: list[dict]) -> tuple[int, Any]:
        errors = [
            {
                "request_id": str(i),
                "errors": [
                    {
                        "code": "InvalidType",
                        "path": "price",
                        "detail": "This value should be greater than or equal to 0.",
                    }
                ],
            }
            for i, item in enumerate(body)
            if isinstance(item.get("price"), int) and item["price"] < 0
        ]
        if errors:
            return self._problem(400, "Request validation failed", **{"validation-errors": errors})
        created = []
        for i, item in enumerate(body):
            new_id = next(self.ids)
            self.store[kind][new_id] = {"id": new_id, **item}
            created.append({"id": new_id, "request_id": str(i)})
        return 200, {"_embedded": {kind: created}}

    # --- inspection ------------------------------------------------------------------------
    def api_requests(self) -> list[tuple[float, str, str, int]]:
        with self.lock:
            return [r for r in self.requests if r[2] != "/oauth2/access_token"]

    def close(self) -> None:
        stop(self.server)


#: a lead status change and a contact update as Kommo posts them (form-urlencoded, PHP brackets)
WEBHOOK = (
    "account%5Bid%5D=29085955&account%5Bsubdomain%5D=example&leads%5Bstatus%5D%5B0%5D%5Bid%5D=10701093"
    "&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142&leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D=20067736"
    "&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=555&leads%5Bstatus%5D%5B0%5D%5Bprice%5D=22500"
    "&contacts%5Bupdate%5D%5B0%5D%5Bid%5D=77&contacts%5Bupdate%5D%5B0%5D%5Bname%5D=Ann"
)
