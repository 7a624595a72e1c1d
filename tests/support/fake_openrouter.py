"""A fake OpenRouter (chat completions and /key) that behaves as reference/apis.md documents.

Modes, switchable at run time (``fake.mode = ...`` or a queue of one-shot modes in ``fake.script``):
``ok``, ``429`` (Retry-After), ``402``, ``500``, ``malformed`` (content that is not JSON), ``error200``
(an error inside an HTTP 200), ``typed_error`` (an error whose ``code`` is a name, not a number),
``slow`` (answers after ``slow_seconds``).  Every answer costs ``cost_per_call``; a chunk containing one
of ``invalid_markers`` always gets invalid output.  It also answers 429 when
more than ``rate_limit`` requests arrive in a second, and counts every request it sees.

The extraction it returns is deterministic: every capitalised word of the chunk is an entity, and
consecutive entities are related, so merge results can be checked exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.httpserver import QuietHandler, serve, stop


class FakeOpenRouter:
    def __init__(self, *, rate_limit: int | None = None, key: str = "sk-or-v1-test") -> None:
        self.mode = "ok"
        self.script: deque[str] = deque()
        self.rate_limit = rate_limit
        self.key = key
        self.slow_seconds = 5.0
        self.retry_after = "1"
        self.cost_per_call = 0.0001  # USD, in every answer's usage.cost
        self.invalid_markers: tuple[
            str, ...
        ] = ()  # a chunk containing one gets invalid output, repair included
        self.requests: list[dict[str, Any]] = []
        self.arrivals: deque[float] = deque()
        self.lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") in ("/api/v1/key", "/api/v1/auth/key"):
                    if not fake._authorised(self):
                        return fake._send(
                            self, 401, {"error": {"code": 401, "message": "Missing Authentication header"}}
                        )
                    return fake._send(
                        self,
                        200,
                        {
                            "data": {
                                "label": "sk-or-v1-te...est",
                                "limit": 100,
                                "limit_remaining": 74.5,
                                "usage": 25.5,
                                "is_free_tier": False,
                                "rate_limit": {"requests": 1000, "interval": "1h"},
                            }
                        },
                    )
                fake._send(self, 404, {"error": {"code": 404, "message": "Not Found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake._chat(self, body)

        self.server = serve(Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/api/v1"

    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        return handler.headers.get("Authorization") == f"Bearer {self.key}"

    def _send(
        self, handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict | None = None
    ) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _chat(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        now = time.monotonic()
        chunk = body["messages"][1]["content"] if len(body.get("messages", [])) > 1 else ""
        with self.lock:
            mode = self.script.popleft() if self.script else self.mode
            while self.arrivals and self.arrivals[0] <= now - 1.0:
                self.arrivals.popleft()
            self.arrivals.append(now)
            over_rate = self.rate_limit is not None and len(self.arrivals) > self.rate_limit
            entry = {
                "at": now,
                "mode": mode,
                "over_rate": over_rate,
                "headers": dict(handler.headers),
                "body": body,
                "chunk": hashlib.sha256(self.chunk_of(chunk).encode()).hexdigest()[:16],
                "repair": len(body.get("messages", [])) > 2,
                "status": None,
                "paid": False,
            }
            self.requests.append(entry)

        def reply(status: int, payload: Any, headers: dict | None = None) -> None:
            entry["status"] = status
            self._send(handler, status, payload, headers)

        if handler.path.rstrip("/") != "/api/v1/chat/completions":
            return reply(404, {"error": {"code": 404, "message": "Not Found"}})
        if not self._authorised(handler):
            return reply(401, {"error": {"code": 401, "message": "Missing Authentication header"}})
        if over_rate or mode == "429":
            return reply(
                429,
                {
                    "error": {
                        "code": 429,
                        "message": "Rate limit exceeded",
                        "metadata": {"error_type": "rate_limit_exceeded"},
                    }
                },
                {"Retry-After": self.retry_after},
            )
        if mode == "402":
            return reply(
                402,
                {
                    "error": {
                        "code": 402,
                        "message": "Insufficient credits. Add more using https://openrouter.ai/credits",
                    }
                },
            )
        if mode == "500":
            return reply(500, {"error": {"code": 500, "message": "Internal Server Error"}})
        if mode == "typed_error":  # an error whose code is a name, inside an HTTP 200
            return reply(
                200,
                {
                    "error": {
                        "code": "provider_overloaded",
                        "message": "no provider available",
                        "metadata": {"error_type": "provider_overloaded"},
                    }
                },
            )
        if mode == "slow":
            time.sleep(self.slow_seconds)
        if mode == "error200":
            return reply(
                200,
                {
                    "id": "gen-err",
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "error",
                            "message": {"role": "assistant", "content": ""},
                            "error": {"code": 502, "message": "Provider returned error"},
                        }
                    ],
                },
            )
        entry["paid"] = True  # a completion, with its usage and cost (error answers carry none)
        invalid = mode == "malformed" or any(marker in chunk for marker in self.invalid_markers)
        content = "this is {not json" if invalid else json.dumps(self.extraction_for(chunk))
        return reply(
            200,
            {
                "id": "gen-123",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model"),
                "provider": "FakeProvider",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "native_finish_reason": "stop",
                        "message": {"role": "assistant", "content": content},
                    }
                ],
                "usage": {
                    "prompt_tokens": len(chunk) // 4 + 50,
                    "completion_tokens": len(content) // 4,
                    "total_tokens": len(chunk) // 4 + 50 + len(content) // 4,
                    "cost": self.cost_per_call,
                },
            },
        )

    @staticmethod
    def chunk_of(content: str) -> str:
        return content.split("<<<", 1)[-1].rsplit(">>>", 1)[0]

    def paid_calls_by_chunk(self) -> Counter[str]:
        """Calls answered with a completion (what OpenRouter bills), per chunk text, repairs apart."""
        with self.lock:
            return Counter(r["chunk"] for r in self.requests if r["paid"] and not r["repair"])

    def paid_calls(self) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r["paid"])

    @classmethod
    def extraction_for(cls, chunk: str) -> dict[str, Any]:
        text = cls.chunk_of(chunk)
        names = list(dict.fromkeys(re.findall(r"\b[A-ZА-ЯЁ][a-zа-яё]{2,}\b", text)))
        entities = [{"name": n, "type": "concept", "description": f"{n} is mentioned"} for n in names]
        relations = [
            {"source": a, "target": b, "type": "related to", "description": f"{a} then {b}", "weight": 1}
            for a, b in zip(names, names[1:], strict=False)
        ]
        return {"entities": entities, "relations": relations}

    def chat_requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        stop(self.server)
