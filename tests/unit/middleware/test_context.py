"""middleware.context: every log line inside a message carries its ids, and none after it."""

from __future__ import annotations

import io
import json
import logging

from middleware.context import LogContext
from tests.support.units import proxy, stub_broker
from worker_service.observability.logs import configure_logging


def test_log_lines_inside_a_message_carry_its_context_and_lines_after_it_do_not():
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    try:
        log = logging.getLogger("tests.context")
        message = proxy("process_asset", queue="assets", kwargs={"asset_id": "a-1"})
        broker = stub_broker()
        LogContext().before_process_message(broker, message)
        log.info("inside")
        LogContext().after_process_message(broker, message)
        log.info("after")
    finally:
        configure_logging("INFO", "json")
    inside, after = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (inside["message_id"], inside["actor"], inside["queue"], inside["asset_id"]) == (
        message.message_id,
        "process_asset",
        "assets",
        "a-1",
    )
    assert {"time", "level", "logger", "message"} <= inside.keys()
    assert "message_id" not in after
