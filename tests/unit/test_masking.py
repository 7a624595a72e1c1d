"""worker_service.masking: the one rule every page, API and Sentry event applies."""

from __future__ import annotations

from worker_service.masking import mask, mask_url_credentials


def test_secret_keys_are_masked_at_any_depth_whatever_the_names_spelling():
    payload = {
        "token": "t0k",
        "body": "x",
        "nested": [
            {
                "Password": "p",
                "apiKey": "k",
                "dsn": "https://a@b/1",
                "refresh_token": "r",
                "pass": "s",
                "name": "Ann",
            }
        ],
    }
    assert mask(payload) == {
        "token": "***",
        "body": "x",
        "nested": [
            {
                "Password": "***",
                "apiKey": "***",
                "dsn": "***",
                "refresh_token": "***",
                "pass": "***",
                "name": "Ann",
            }
        ],
    }


def test_credentials_inside_any_url_in_a_string_are_masked():
    source = "https://user:hunter2@files.example/a.pdf and redis://:pw@10.0.0.1:6379/0"
    assert mask({"source": source}) == {
        "source": "https://user:***@files.example/a.pdf and redis://***@10.0.0.1:6379/0"
    }
    assert mask_url_credentials("https://files.example/a.pdf?x=1") == "https://files.example/a.pdf?x=1"
    assert mask_url_credentials("https://ghp_TOKEN@host/x") == "https://***@host/x"


def test_configured_secret_values_are_masked_wherever_they_appear():
    event = {"message": "failed with key sk-live-123 at step 2", "extra": ("sk-live-123",)}
    masked = mask(event, secrets=("sk-live-123",), replacement="[Filtered]")
    assert masked == {"message": "failed with key [Filtered] at step 2", "extra": ["[Filtered]"]}


def test_empty_secrets_stay_empty_so_an_unset_value_is_visible_as_unset():
    assert mask({"token": "", "password": None}) == {"token": "", "password": None}


def test_presigned_signatures_and_secret_query_parameters_are_masked_wherever_a_url_appears():
    """Regression (second probe): ``?X-Amz-Signature=`` and EVENTS_WEBHOOK_URL's ``?token=`` were never masked."""
    from worker_service.masking import mask_text

    presigned = (
        "https://bucket.s3.amazonaws.com/a.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20261207"
        "&X-Amz-Date=20261207T000000Z&X-Amz-Signature=f00dfeed&X-Amz-Security-Token=FwoG"
    )
    assert mask_text(presigned) == (
        "https://bucket.s3.amazonaws.com/a.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=***&X-Amz-Date=20261207T000000Z&X-Amz-Signature=***"
        "&X-Amz-Security-Token=***"
    )
    assert (
        mask_text("POST https://hooks.example/in?token=abc123&x=2 failed")
        == "POST https://hooks.example/in?token=***&x=2 failed"
    )
    assert (
        mask_text("https://acct.blob.core.windows.net/c/a.pdf?sv=2024&sig=AbC%2B")
        == "https://acct.blob.core.windows.net/c/a.pdf?sv=2024&sig=***"
    )
    assert mask_text("idempotency_key=knowledge:a1 design=x") == "idempotency_key=knowledge:a1 design=x"


def test_a_messages_repr_and_json_text_keep_no_secret_keyword_argument():
    """What Dramatiq's own log lines print: ``actor(kw='value', ...)``; and JSON text in an error."""
    from worker_service.masking import mask_text

    line = (
        "Failed to process message crm_handle_webhook(body='leads%5Bstatus%5D%5B0%5D%5Bid%5D=1', "
        "token='hook-secret') with unhandled exception."
    )
    assert "hook-secret" not in mask_text(line) and "token='***'" in mask_text(line)
    assert mask_text('{"api_key": "sk-1", "name": "Ann"}') == '{"api_key": "***", "name": "Ann"}'
    assert mask_text("{'password': 'it\\'s', 'x': 1}") == "{'password': '***', 'x': 1}"


def test_an_asset_record_shows_no_source_password_or_signature():
    from worker_service.database.models import Asset

    record = Asset(
        asset_id="a1",
        status="failed",
        source="https://bob:hunter2@files.example/a.pdf?sig=S1G",
        error_message="GET https://bob:hunter2@files.example/a.pdf?sig=S1G: HTTP 500",
    ).to_public()
    assert "hunter2" not in str(record) and "S1G" not in str(record)
    assert record["source"] == "https://bob:***@files.example/a.pdf?sig=***"
