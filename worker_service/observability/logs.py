"""Structured logging for every process of the service.

JSON lines by default (python-json-logger), ``LOG_FORMAT=text`` for people.
Each record carries ``time``, ``level``, ``logger``, ``message`` and, while a
message is being processed, the fields bound by :func:`set_message_context`
(message_id, actor, queue, asset_id, trace_id, span_id).  Dramatiq's own
loggers go through the same root handler.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("message_id", "actor", "queue", "asset_id", "trace_id", "span_id")
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_message_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("message_context",
                                                                                       default=_EMPTY)


def set_message_context(**fields: Any) -> contextvars.Token:
    merged = {**_message_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    return _message_context.set(merged)


def reset_message_context(token: contextvars.Token) -> None:
    _message_context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _message_context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class _Json(JsonFormatter):
    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_record["level"] = record.levelname
        log_record["logger"] = record.name
        log_record.setdefault("process", record.process)


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(f"{k}={getattr(record, k)}" for k in CONTEXT_FIELDS if getattr(record, k, None))
        return f"{base} [{extras}]" if extras else base


def configure_logging(level: str = "INFO", fmt: str = "json", stream: Any = None) -> None:
    """Install the single root handler (replacing Dramatiq's basicConfig one)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(_Json("%(message)s", json_ensure_ascii=False))
    else:
        handler.setFormatter(_Text("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("pika", "urllib3", "pdfminer", "peewee"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
