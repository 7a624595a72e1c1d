"""A local HTTP upstream that answers 429 above a request rate, counting every request it sees."""

from __future__ import annotations

import threading
import time
from collections import deque

from tests.support.httpserver import QuietHandler, serve, stop


class RateCheckingUpstream:
    """Serves 200 unless more than ``rate`` requests arrived in the trailing ``window`` seconds (then 429)."""

    def __init__(self, rate: int, window: float = 1.0) -> None:
        self.rate = rate
        self.window = window
        self.arrivals: deque[float] = deque()
        self.log: list[tuple[float, int]] = []
        self.lock = threading.Lock()
        upstream = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                now = time.monotonic()
                with upstream.lock:
                    while upstream.arrivals and upstream.arrivals[0] <= now - upstream.window:
                        upstream.arrivals.popleft()
                    upstream.arrivals.append(now)
                    status = 429 if len(upstream.arrivals) > upstream.rate else 200
                    upstream.log.append((now, status))
                body = b'{"ok":true}' if status == 200 else b"Too Many Requests"
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"

    def stats(self) -> dict[str, float]:
        with self.lock:
            log = list(self.log)
        ok = [t for t, s in log if s == 200]
        span = (ok[-1] - ok[0]) if len(ok) > 1 else 0.0
        return {
            "requests": len(log),
            "ok": len(ok),
            "throttled": sum(1 for _, s in log if s == 429),
            "achieved_rps": (len(ok) - 1) / span if span else 0.0,
        }

    def close(self) -> None:
        stop(self.server)
