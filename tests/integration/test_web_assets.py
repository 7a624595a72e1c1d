"""The operator's assets pages (issue 41): the list by state over HTTP and in Chromium, the reasons on an asset's
page, dead letters tied to their asset by its domain code, the styled not-found page."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime, timedelta

import requests
from dramatiq.message import Message

from tests.support.browser import ARTIFACTS
from tests.support.browser import browser_page as _browser_page
from tests.support.helpers import WEB_PASSWORD as PASSWORD
from tests.support.helpers import WEB_TOKEN as TOKEN
from tests.support.helpers import run_cli

API = {"Authorization": f"Bearer {TOKEN}"}
#: (asset id, status, knowledge status, detected type, error code); created a minute apart, in this order
SEEDED = [
    ("inv-001", "extracted", "done", "pdf", None),
    ("inv-002", "extracted", "skipped", "pdf", None),
    ("contract-7", "failed", None, "pdf", "encrypted"),
    ("scan-3", "retrying", None, None, "fetch_failed"),
    ("memo", "processing", None, None, None),
    ("notes", "extracted", "failed", "docx", None),
    ("old-one", "received", None, None, None),
]
T0 = datetime(2026, 12, 1, 9, 0, 0)


def _seed(env: dict[str, str]) -> None:
    from worker_service.database import Asset, init_database, migrate, session

    init_database(env["DATABASE_URL"])
    migrate()
    with session():
        for i, (asset_id, status, knowledge, kind, code) in enumerate(SEEDED):
            Asset.create(
                asset_id=asset_id,
                status=status,
                knowledge_status=knowledge,
                detected_type=kind,
                error_code=code if status == "failed" else None,
                filename=f"{asset_id}.bin",
                last_error=f"{code}: name or service not known" if status == "retrying" else None,
                next_attempt_at=datetime.utcnow() + timedelta(minutes=5) if status == "retrying" else None,
                knowledge_error_code="openrouter_not_configured"
                if knowledge == "skipped"
                else ("invalid_llm_output" if knowledge == "failed" else None),
                knowledge_error_message="OPENROUTER_API_KEY is not set" if knowledge == "skipped" else None,
                size=123_456,
                created_at=T0 + timedelta(minutes=i),
                updated_at=T0 + timedelta(minutes=i),
            )


def _dead_letter(
    env: dict[str, str], asset_id: str | None, code: str, error_type: str = "permanent_error"
) -> int:
    from middleware.deadletters import DeadLetters
    from worker_service.database import DeadLetter, init_database, migrate, session
    from worker_service.errors import PermanentError
    from worker_service.outcome import Dead

    init_database(env["DATABASE_URL"])
    migrate()
    kwargs = {"asset_id": asset_id, "source": "file:x.pdf"} if asset_id else {"tag": "no asset"}
    message = Message(
        queue_name="assets",
        actor_name="process_asset",
        args=(),
        kwargs=kwargs,
        options={},
        message_id=str(uuid.uuid4()),
        message_timestamp=int(time.time() * 1000),
    )
    DeadLetters().record(
        message, Dead.of(error_type, PermanentError(f"{code} input", error_code=code), error_code=code)
    )
    with session():
        return DeadLetter.select().order_by(DeadLetter.id.desc()).get().id


def _ids(answer: dict) -> list[str]:
    return [a["asset_id"] for a in answer["assets"]]


def test_the_assets_api_filters_by_each_state_type_search_and_time_with_counts_and_keyset_pages(web):
    base, env = web
    _seed(env)
    everything = requests.get(f"{base}/api/assets", headers=API).json()
    assert _ids(everything) == [s[0] for s in reversed(SEEDED)]  # newest first
    assert everything["counts"] == {
        "received": 1,
        "processing": 1,
        "retrying": 1,
        "extracted": 3,
        "failed": 1,
    }
    assert everything["knowledge_counts"]["skipped"] == 1 and everything["next_cursor"] is None
    assert everything["counts_capped"] == {"status": [], "knowledge_status": []}  # exact below 10,000
    for status in ("received", "processing", "retrying", "extracted", "failed"):
        answer = requests.get(f"{base}/api/assets", params={"status": status}, headers=API).json()
        assert _ids(answer) == [s[0] for s in reversed(SEEDED) if s[1] == status], status
        assert answer["counts"] == everything["counts"]  # a tab's count does not depend on the open tab
    for knowledge in ("done", "skipped", "failed"):
        answer = requests.get(
            f"{base}/api/assets", params={"knowledge_status": knowledge}, headers=API
        ).json()
        assert _ids(answer) == [s[0] for s in reversed(SEEDED) if s[2] == knowledge], knowledge
    pdfs = requests.get(
        f"{base}/api/assets", params={"type": "pdf", "status": "extracted"}, headers=API
    ).json()
    assert _ids(pdfs) == ["inv-002", "inv-001"] and pdfs["counts"]["failed"] == 1  # counts keep the type
    assert _ids(requests.get(f"{base}/api/assets", params={"q": "inv-"}, headers=API).json()) == [
        "inv-002",
        "inv-001",
    ]
    assert _ids(requests.get(f"{base}/api/assets", params={"q": "TRACT-7.b"}, headers=API).json()) == [
        "contract-7"
    ]
    assert (
        _ids(requests.get(f"{base}/api/assets", params={"q": "%"}, headers=API).json()) == []
    )  # no wildcard
    since = (T0 + timedelta(minutes=5)).isoformat()
    assert _ids(requests.get(f"{base}/api/assets", params={"since": since}, headers=API).json()) == [
        "old-one",
        "notes",
    ]
    seen, cursor = [], None
    while True:  # two at a time: every record once, in order
        answer = requests.get(
            f"{base}/api/assets", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=API
        ).json()
        seen += _ids(answer)
        cursor = answer["next_cursor"]
        if cursor is None:
            break
    assert seen == _ids(everything)
    for bad in (
        {"status": "lost"},
        {"since": "yesterday"},
        {"cursor": "not-a-cursor"},
        {"limit": "0"},
        {"limit": "x"},
        {"knowledge_status": "maybe"},
    ):
        refused = requests.get(f"{base}/api/assets", params=bad, headers=API)
        assert refused.status_code == 400 and "error" in refused.json(), bad


def test_a_dead_letter_names_its_asset_and_domain_code_and_filters_by_the_code(web):
    base, env = web
    corrupt = _dead_letter(env, "broken", "corrupt")
    _dead_letter(env, "locked", "encrypted")
    _dead_letter(env, None, "invalid_payload", error_type="invalid_payload")
    listed = {d["id"]: d for d in requests.get(f"{base}/api/dead-letters", headers=API).json()["items"]}
    assert (listed[corrupt]["asset_id"], listed[corrupt]["error_code"], listed[corrupt]["error_type"]) == (
        "broken",
        "corrupt",
        "permanent_error",
    )
    assert [d["asset_id"] for d in listed.values()].count(None) == 1  # the message that names none
    by_code = requests.get(f"{base}/api/dead-letters", params={"error_type": "corrupt"}, headers=API).json()
    assert [d["id"] for d in by_code["items"]] == [corrupt] and by_code["total"] == 1
    by_type = requests.get(
        f"{base}/api/dead-letters", params={"error_type": "permanent_error"}, headers=API
    ).json()
    assert by_type["total"] == 2
    cli = run_cli(env, "dlq", "list", "--error-type", "corrupt", "--json")
    assert [(d["asset_id"], d["error_code"]) for d in json.loads(cli.stdout)] == [("broken", "corrupt")]
    nothing = run_cli(env, "dlq", "list", "--error-type", "too_large")
    assert nothing.returncode == 0 and "0 shown, 0 matching" in nothing.stdout
    assert "no dead letter matches" in nothing.stderr and "corrupt (1)" in nothing.stderr
    assert "encrypted (1)" in nothing.stderr
    help_text = run_cli(env, "dlq", "list", "--help").stdout
    assert "domain code" in help_text and "example" in help_text


def test_browser_assets_by_state_reasons_dead_letter_links_permanent_requeue_and_the_404_page(
    web, chromium_path
):
    base, env = web
    _seed(env)
    encrypted = _dead_letter(env, "contract-7", "encrypted")
    with _browser_page(chromium_path, f"{base}/assets", "admin", PASSWORD, height=1000) as page:
        page.wait_for_selector("#assets")
        assert page.locator("#assets tbody tr").count() == len(SEEDED)
        assert "extracted 3" in page.inner_text("#status-counts")
        for status in ("received", "processing", "retrying", "extracted", "failed"):
            page.click(f"#tab-{status}")
            page.wait_for_selector(f"#tab-{status}.on")
            shown = [row.split("\t")[0] for row in page.inner_text("#assets tbody").splitlines() if row]
            assert shown == [s[0] for s in reversed(SEEDED) if s[1] == status], (status, shown)
        page.screenshot(path=str(ARTIFACTS / "assets-list.png"), full_page=True)
        page.goto(f"{base}/assets?knowledge_status=skipped")
        page.click("a[href='/assets/inv-002']")
        page.wait_for_selector("#knowledge-why")
        assert "OPENROUTER_API_KEY is not set" in page.inner_text("#knowledge-why")
        page.goto(f"{base}/assets/scan-3")
        why = page.inner_text("#why")
        assert "Retrying" in why and "fetch_failed: name or service not known" in why and "in " in why
        assert "120.6 KiB" in page.inner_text("#record")
        page.goto(f"{base}/dead-letters")
        page.click("a.asset-link[href='/assets/contract-7']")
        page.wait_for_selector("#why")
        assert "encrypted" in page.inner_text("#why")
        page.goto(f"{base}/dead-letters/{encrypted}")
        assert (
            page.inner_text("#error-code") == "encrypted" and page.inner_text("#asset-link") == "contract-7"
        )
        assert "permanent" in page.inner_text("#permanent-hint")
        page.click("#requeue")
        page.wait_for_selector("#confirm")
        assert "considers permanent" in page.inner_text("#why")
        page.screenshot(path=str(ARTIFACTS / "requeue-permanent.png"), full_page=True)
        page.goto(f"{base}/dead-letters?error_type=too_large")
        assert "encrypted" in page.inner_text("#no-match")  # what exists, when nothing matched
        answer = page.goto(f"{base}/assets/no-such-asset")
        assert answer is not None and answer.status == 404
        assert "No asset" in page.inner_text("#not-found")
        page.fill("#missing-q", "inv")
        page.press("#missing-q", "Enter")
        page.wait_for_selector("#assets")
        assert page.locator("#assets tbody tr").count() == 2


def test_browser_retry_now_sends_a_retrying_assets_work_again_at_once(web, chromium_path, start_worker):
    """Issue 41: a retrying asset shows its error and next attempt, and an operator's "Retry now" runs it at once
    (a new generation; the waiting retry is skipped when due), audited."""
    import redis
    from worker_contracts import Sender

    from tests.support.helpers import wait_for
    from tests.support.httpserver import QuietHandler, serve, stop

    answers = {"status": 503}

    class Flaky(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = b"the upstream is back"
            self.send_response(answers["status"])
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = serve(Flaky)
    base, env = web
    try:
        start_worker(
            env={
                **env,
                "FETCH_ALLOW_HTTP": "true",
                "FETCH_ALLOWLIST": "127.0.0.1",
                "RETRY_BACKOFF_BASE_MS": "600000",
                "RETRY_BACKOFF_MAX_MS": "600000",
            }
        )
        Sender(redis.Redis.from_url(env["BROKER_URL"])).process_asset(
            "flaky", f"http://127.0.0.1:{server.server_port}/doc.txt", filename="doc.txt"
        )

        def record() -> dict:
            return requests.get(f"{base}/api/assets/flaky", headers=API).json()

        wait_for(lambda: record().get("status") == "retrying", 60, 0.3, "the asset retrying (HTTP 503)")
        answers["status"] = 200
        with _browser_page(chromium_path, f"{base}/assets/flaky", "admin", PASSWORD, height=900) as page:
            why = page.inner_text("#why")
            assert "Retrying after attempt 1" in why and "HTTP 503" in why and re.search(r"\(in \d+ min", why)
            page.click("#retry-now")
            page.wait_for_selector("#flash")
            assert "again now" in page.inner_text("#flash")
        wait_for(
            lambda: record().get("status") == "extracted", 30, 0.3, "extracted at once, not in 10 minutes"
        )
        audit = requests.get(f"{base}/api/audit", headers=API).json()
        assert (audit[0]["action"], audit[0]["target"]) == ("asset-retry-now", "flaky")
        refused = requests.post(f"{base}/api/assets/flaky/retry", headers=API)
        assert refused.status_code == 409  # nothing is retrying any more
    finally:
        stop(server)
