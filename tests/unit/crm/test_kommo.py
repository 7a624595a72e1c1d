"""worker_service.crm.kommo: a 403 pauses the fleet only when Kommo says the account is blocked."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("body", "blocked"),
    [
        (b"<html><head><title>403 Forbidden</title></head><body><center>nginx</center></body></html>", True),
        (
            b'{"title":"Forbidden","type":"https://httpstatus.es/403","status":403,"detail":"Too many requests, IP '
            b'blocked"}',
            True,
        ),
        (
            b'{"title":"Forbidden","type":"https://httpstatus.es/403","status":403,"detail":"User does not have rights '
            b'to edit leads"}',
            False,
        ),
    ],
)
def test_a_403_is_a_block_only_when_kommo_says_so(body, blocked, monkeypatch):
    import requests

    from worker_service.crm.kommo import KommoClient
    from worker_service.errors import PermanentError
    from worker_service.ratelimit import RateLimited

    pauses: list[str] = []

    class Limiter:
        def pause(self, upstream: str, ms: int, reason: str, **kwargs: object) -> None:
            pauses.append(reason)

    response = requests.Response()
    response.status_code, response._content = 403, body
    client = KommoClient(base_url="https://x.kommo.com", limiter=Limiter(), redis_client=None)  # type: ignore[arg-type]
    with pytest.raises(RateLimited if blocked else PermanentError) as raised:
        client._result(response)
    if blocked:
        assert pauses and pauses[0].startswith("403 block")
    else:
        assert (
            pauses == []
            and raised.value.error_code == "kommo_403"
            and "does not have rights" in str(raised.value)
        )
