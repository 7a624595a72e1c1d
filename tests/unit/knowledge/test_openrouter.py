"""worker_service.knowledge.openrouter: error codes that are names are read by their meaning."""

from __future__ import annotations

import pytest

from worker_service.knowledge.openrouter import error_status


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ({"code": 429, "message": "x"}, 429),
        ({"code": "503"}, 503),
        ({"code": "rate_limit_exceeded"}, 429),
        ({"code": "Payment_Required"}, 402),
        ({"code": "provider_overloaded"}, 503),
        ({"code": "weird", "metadata": {"error_type": "permission_denied"}}, 403),
        ({"code": "something new"}, 599),  # unknown: the caller's default (a server-side failure, retried)
        ({"code": None}, 599),
        ({"code": True}, 599),
        ("not an object", 599),
    ],
)
def test_error_codes_that_are_not_integers_are_read_by_their_meaning(error, status):
    assert error_status(error, default=599) == status
