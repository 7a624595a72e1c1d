"""Every log line passes the masking rule: the message, Dramatiq's message reprs, exceptions and extra fields."""

from __future__ import annotations

import io
import json
import logging

import pytest

from worker_service.observability.logs import MAX_MESSAGE_CHARS, configure_logging

SECRETS = ("kommo-long-lived-token", "sk-or-v1-abcdef", "api-token-123456")


@pytest.fixture()
def lines():
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream, secrets=SECRETS)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    configure_logging("INFO", "json")


def test_no_configured_secret_url_password_or_signature_reaches_a_log_line(lines):
    log = logging.getLogger("dramatiq.worker.WorkerThread")
    log.error(
        "Failed to process message %s with unhandled exception.",
        "process_asset(asset_id='a1', source='https://bob:hunter2@files.example/a.pdf?X-Amz-Signature=f00d')",
    )
    log.warning(
        "Kommo answered 401 for Bearer %s", "kommo-long-lived-token", extra={"detail": "key sk-or-v1-abcdef"}
    )
    try:
        raise RuntimeError("token='api-token-123456' refused by https://u:pw-in-url@h/")
    except RuntimeError:
        log.exception("boom")
    text = json.dumps(lines())
    for secret in (*SECRETS, "hunter2", "f00d", "pw-in-url"):
        assert secret not in text, secret
    assert "RuntimeError" in lines()[-1]["exc_info"]  # the traceback is still there, masked


def test_a_huge_message_is_cut(lines):
    logging.getLogger("tests").warning("body %s", "x" * 5_000_000)
    (line,) = lines()
    assert len(line["message"]) < MAX_MESSAGE_CHARS + 100 and "more characters not logged" in line["message"]


def test_an_expected_outcome_is_not_logged_again_by_dramatiq_and_an_unexpected_one_keeps_its_traceback(lines):
    from worker_service.errors import PermanentError, SkipWork, TransientError

    log = logging.getLogger("dramatiq.worker.WorkerThread")
    for exc in (
        PermanentError("encrypted", error_code="encrypted"),
        TransientError("cannot resolve x.invalid"),
    ):
        try:
            raise exc
        except Exception:
            log.error(
                "Failed to process message %s with unhandled exception.", "process_asset(...)", exc_info=True
            )
    log.info(
        "Failed to process message %s with expected exception %s.",
        "extract_knowledge(...)",
        SkipWork.__name__,
    )
    try:
        raise KeyError("a bug")
    except KeyError:
        log.error(
            "Failed to process message %s with unhandled exception.", "process_asset(...)", exc_info=True
        )
    (line,) = lines()
    assert line["level"] == "ERROR" and "KeyError" in line["exc_info"]


def test_a_broker_outage_is_one_warning_naming_the_broker_not_a_critical_line_per_consumer_every_3_s():
    """Issue 41: Dramatiq's consumers say CRITICAL "Consumer encountered a connection error" and INFO "Restarting
    consumer" every 3 s each; the operator gets one WARNING naming BROKER_URL (masked) and `worker check`."""
    import io
    import json
    import logging

    from worker_service.observability.logs import configure_logging

    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream, broker_url="redis://u:***@10.0.0.5:6379/0")
    for queue in ("assets", "knowledge", "crm") * 5:
        consumer = logging.getLogger(f"dramatiq.worker.ConsumerThread({queue})")
        consumer.critical(
            "Consumer encountered a connection error: %s", "Error 111 connecting to 10.0.0.5:6379."
        )
        consumer.info("Restarting consumer in %0.2f seconds.", 3)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1 and lines[0]["level"] == "WARNING"
    assert "Cannot reach the broker at redis://u:***@10.0.0.5:6379/0: Error 111" in lines[0]["message"]
    assert "worker check" in lines[0]["message"]
    logging.getLogger("dramatiq.worker.ConsumerThread(assets)").info("Consumer is paused.")  # others pass
    assert "Consumer is paused." in stream.getvalue()
