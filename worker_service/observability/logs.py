"""Structured logging for every process of the service.

JSON lines by default (python-json-logger), ``LOG_FORMAT=text`` for people.
Each record carries ``time``, ``level``, ``logger``, ``message`` and, while a
message is being processed, the fields bound by :func:`set_message_context`
(message_id, actor, queue, asset_id, trace_id, span_id).  Dramatiq's own
loggers go through the same root handler.

An outcome the service classified (a permanent error with its code, a transient one that is retried, a skip,
a deferral, a hard time-out or memory cap) is logged once, by the middleware that decides it, as one INFO or
WARNING line with its code: Dramatiq's own "Failed to process message ... with unhandled exception" line and
its traceback are dropped for those (``ExpectedOutcomes``); an unexpected exception keeps its ERROR line and
traceback.

Every line passes worker_service.masking's rule on its way out (message, exception text and extra fields):
Dramatiq's own lines print a message's arguments (a webhook token, a source URL's password, a presigned
URL's signature), and the configured secrets must not appear anywhere. A message longer than
``MAX_MESSAGE_CHARS`` is cut (a forged 5 MB webhook body is not logged whole).
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from worker_service.errors import HardTimeout, MemoryLimitExceeded, PermanentError, SkipWork, TransientError
from worker_service.masking import mask_text

CONTEXT_FIELDS = ("message_id", "actor", "queue", "asset_id", "trace_id", "span_id")
MAX_MESSAGE_CHARS = 4_000
#: the attributes every LogRecord has: anything else on a record is an ``extra`` field, masked like the message
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_message_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "message_context", default=_EMPTY
)


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


#: the exceptions that are outcomes the service classified (worker_service.errors): middleware logs each once
EXPECTED_OUTCOMES = (PermanentError, TransientError, SkipWork, HardTimeout, MemoryLimitExceeded)


class ExpectedOutcomes(logging.Filter):
    """Drops Dramatiq's worker-thread line about a message that ended in an outcome the service classified: the
    retries, dead-letter and status middleware already logged it once, with its code and no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "dramatiq.worker.WorkerThread" or not str(record.msg).startswith(
            "Failed to process"
        ):
            return True
        if "with expected exception" in str(record.msg):  # an actor's ``throws``: SkipWork and the like
            return False
        return not (record.exc_info and isinstance(record.exc_info[1], EXPECTED_OUTCOMES))


class BrokerOutage(logging.Filter):
    """Dramatiq's consumers log CRITICAL "Consumer encountered a connection error" and INFO "Restarting consumer"
    every 3 s each while the broker is out of reach: a wall of lines that never names the broker.  This turns
    the first of an outage into one WARNING naming the broker's URL (password masked) and ``worker check``, says
    it again at most every ``every_s`` with how many attempts failed meanwhile, and drops the rest.

    Parameters: broker_url (masked by the caller), every_s."""

    def __init__(self, broker_url: str = "", every_s: float = 60.0) -> None:
        super().__init__()
        self.broker_url = broker_url or "BROKER_URL"
        self.every_s = every_s
        self.said_at = float("-inf")
        self.failed_since = 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("dramatiq.worker.ConsumerThread"):
            return True
        text = str(record.msg)
        if text.startswith("Restarting consumer"):
            return time.monotonic() - self.said_at > self.every_s  # quiet during an outage
        if not text.startswith("Consumer encountered a connection error"):
            return True
        with self.lock:
            self.failed_since += 1
            now = time.monotonic()
            if now - self.said_at < self.every_s:
                return False
            failed, self.failed_since, self.said_at = self.failed_since, 0, now
        reason = record.getMessage().removeprefix("Consumer encountered a connection error: ")[:300]
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = (
            (
                f"Cannot reach the broker at {self.broker_url}: {reason}; the consumers retry "
                f"every few seconds ({failed} attempt(s) failed since this was last said; said "
                f"at most every {self.every_s:.0f} s).  `worker check` says more."
            ),
            None,
        )
        return True


class MaskingFilter(logging.Filter):
    """Masks secrets (worker_service.masking, plus the configured ``secrets``) in a record's message, exception
    text and extra fields, and cuts a message past ``max_chars``.  Installed on the handler: it sees every
    logger's records, Dramatiq's included."""

    def __init__(self, secrets: tuple[str, ...] = (), max_chars: int = MAX_MESSAGE_CHARS) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)
        self.max_chars = max_chars

    def _clean(self, text: str) -> str:
        if len(text) > self.max_chars:
            text = f"{text[: self.max_chars]}... ({len(text) - self.max_chars} more characters not logged)"
        return mask_text(text, secrets=self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._clean(record.getMessage()), None
        if record.exc_info:
            # formatted here, masked, and kept as the text every formatter prints instead of the live exception
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text, secrets=self.secrets)
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRIBUTES and isinstance(value, str):
                setattr(record, key, self._clean(value))
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


def configure_logging(
    level: str = "INFO",
    fmt: str = "json",
    stream: Any = None,
    secrets: tuple[str, ...] = (),
    broker_url: str = "",
) -> None:
    """Install the single root handler (replacing Dramatiq's basicConfig one); ``secrets``: values no line may
    show (``Settings.secret_values()``); ``broker_url``: the broker an outage line names (masked)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(_Json("%(message)s", json_ensure_ascii=False))
    else:
        handler.setFormatter(_Text("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(_ContextFilter())
    handler.addFilter(ExpectedOutcomes())  # before the masking filter, which turns exceptions into text
    handler.addFilter(BrokerOutage(broker_url))
    handler.addFilter(MaskingFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("pika", "urllib3", "pdfminer", "peewee"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
