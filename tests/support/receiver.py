"""A receiver of outcome events for tests: answers ``status`` (503 while failing), keeps what it took."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from typing import Any

from tests.support.httpserver import QuietHandler, serve, stop


class EventReceiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.status = 200
        self.received: list[dict[str, Any]] = []  # bodies it answered 2xx to, in arrival order
        self.raw: list[tuple[bytes, str]] = []  # every body as it came, with its X-Worker-Signature
        self.refused = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), raw, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-Worker-Signature", ""), expected)
                with receiver.lock:
                    receiver.raw.append((raw, self.headers.get("X-Worker-Signature", "")))
                    status = receiver.status if signed else 401
                    if status < 300:
                        receiver.received.append(
                            {**json.loads(raw), "_event_id_header": self.headers.get("X-Worker-Event-Id")}
                        )
                    else:
                        receiver.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/worker"

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        stop(self.server)
