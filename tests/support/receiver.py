"""A receiver of outcome events for tests: answers ``status`` (503 while failing), keeps what it took."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class EventReceiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.status = 200
        self.received: list[dict[str, Any]] = []  # bodies it answered 2xx to, in arrival order
        self.refused = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), raw, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-Worker-Signature", ""), expected)
                with receiver.lock:
                    status = receiver.status if signed else 401
                    if status < 300:
                        receiver.received.append({**json.loads(raw), "_event_id_header":
                                                  self.headers.get("X-Worker-Event-Id")})
                    else:
                        receiver.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/worker"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
