"""A local HTTP origin for asset sources: documents whose answer a test holds back, fails, or lets through."""

from __future__ import annotations

import threading
from collections import Counter

from tests.support.httpserver import QuietHandler, serve, stop


class GatedOrigin:
    """``GET /doc/NAME`` answers ``text of NAME``; ``hold(NAME)`` makes it wait (up to 120 s) until
    ``release(NAME)``; ``fail(NAME)`` makes it answer 503.  ``hits[NAME]`` counts the requests."""

    def __init__(self) -> None:
        self.gates: dict[str, threading.Event] = {}
        self.failing: set[str] = set()
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        origin = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                with origin.lock:
                    origin.hits[name] += 1
                    gate = origin.gates.get(name)
                    failing = name in origin.failing
                if gate is not None:
                    gate.wait(120)
                body = b"unavailable" if failing else f"text of {name}\n".encode() * 20
                self.send_response(503 if failing else 200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:  # the worker that asked was killed meanwhile
                    pass

        self.server = serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/doc"

    def hold(self, *names: str) -> None:
        with self.lock:
            for name in names:
                self.gates[name] = threading.Event()

    def release(self, *names: str) -> None:
        with self.lock:
            gates = [self.gates.pop(name) for name in names if name in self.gates]
        for gate in gates:
            gate.set()

    def fail(self, name: str) -> None:
        with self.lock:
            self.failing.add(name)

    def close(self) -> None:
        self.release(*list(self.gates))
        stop(self.server)
