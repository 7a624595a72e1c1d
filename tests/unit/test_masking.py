"""worker_service.masking: the one rule every page, API and Sentry event applies."""

from __future__ import annotations

from worker_service.masking import mask, mask_url_credentials


def test_secret_keys_are_masked_at_any_depth_whatever_the_names_spelling():
    payload = {"token": "t0k", "body": "x", "nested": [{"Password": "p", "apiKey": "k", "dsn": "https://a@b/1",
                                                       "refresh_token": "r", "pass": "s", "name": "Ann"}]}
    assert mask(payload) == {"token": "***", "body": "x", "nested": [
        {"Password": "***", "apiKey": "***", "dsn": "***", "refresh_token": "***", "pass": "***", "name": "Ann"}]}


def test_credentials_inside_any_url_in_a_string_are_masked():
    source = "https://user:hunter2@files.example/a.pdf and redis://:pw@10.0.0.1:6379/0"
    assert mask({"source": source}) == {"source": "https://user:***@files.example/a.pdf and redis://***@10.0.0.1:6379/0"}
    assert mask_url_credentials("https://files.example/a.pdf?x=1") == "https://files.example/a.pdf?x=1"
    assert mask_url_credentials("https://ghp_TOKEN@host/x") == "https://***@host/x"


def test_configured_secret_values_are_masked_wherever_they_appear():
    event = {"message": "failed with key sk-live-123 at step 2", "extra": ("sk-live-123",)}
    masked = mask(event, secrets=("sk-live-123",), replacement="[Filtered]")
    assert masked == {"message": "failed with key [Filtered] at step 2", "extra": ["[Filtered]"]}


def test_empty_secrets_stay_empty_so_an_unset_value_is_visible_as_unset():
    assert mask({"token": "", "password": None}) == {"token": "", "password": None}
