"""The dashboard over real HTTP (waitress), and in headless Chromium (Playwright driving Debian's chromium)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
import requests
from dramatiq.message import Message

from tests.support.browser import ARTIFACTS
from tests.support.browser import browser_login as _browser_login
from tests.support.browser import browser_page as _browser_page
from tests.support.helpers import (
    ROOT,
    db_query,
    free_port,
    post_login,
    run_cli,
    wait_for,
    wait_paused_everywhere,
)
from tests.support.helpers import WEB_PASSWORD as PASSWORD
from tests.support.helpers import WEB_TOKEN as TOKEN


def _dead_letter(env: dict[str, str], actor: str = "noop", error: str = "boom", **kwargs) -> int:
    from middleware.deadletters import DeadLetters
    from worker_service.database import DeadLetter, init_database, migrate, session
    from worker_service.outcome import Dead

    init_database(env["DATABASE_URL"])
    migrate()
    message = Message(
        queue_name="tests",
        actor_name=actor,
        args=(),
        kwargs=kwargs or {"tag": "web"},
        options={"retries": 2},
        message_id=str(uuid.uuid4()),
        message_timestamp=int(time.time() * 1000),
    )
    DeadLetters().record(message, Dead.of("retries_exhausted", RuntimeError(error)))
    with session():
        return DeadLetter.select().order_by(DeadLetter.id.desc()).get().id


def _login(base: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    response = post_login(base, "admin", PASSWORD, session=session, next_path="/")
    assert response.status_code == 303
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = session.get(f"{base}/").text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return session, csrf


def test_login_is_required(web):
    base, _ = web
    response = requests.get(f"{base}/", allow_redirects=False)
    assert response.status_code == 303 and response.headers["Location"].startswith("/login")
    assert requests.get(f"{base}/api/dead-letters").status_code == 401
    assert requests.get(f"{base}/queues/", allow_redirects=False).status_code == 303
    assert post_login(base, "admin", "nope").status_code == 401


def test_failed_logins_are_refused_429_at_once_and_another_accounts_logins_do_not_reset_them(web):
    """Regression (the attacker's probe): a valid login of any account reset the count, so alternating a
    wrong admin guess with a viewer's login kept every guess cheap."""
    base, env = web
    _add_user(env, "vera", "viewer", "vera-long-password")
    codes = []
    for _ in range(8):
        codes.append(post_login(base, "admin", "guess").status_code)
        _login_as(base, "vera", "vera-long-password")  # another account's valid login in between
    assert codes[:5] == [401] * 5 and codes[5:] == [429] * 3
    refused = post_login(base, "admin", PASSWORD)
    assert (
        refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    )  # even the right password now
    _login_as(base, "vera", "vera-long-password")  # the other user is not locked out


def test_wrong_bearer_tokens_are_throttled_too(web):
    base, _ = web
    codes = [
        requests.get(f"{base}/api/dead-letters", headers={"Authorization": f"Bearer wrong-{i}"}).status_code
        for i in range(22)
    ]
    assert codes[:20] == [401] * 20 and codes[20:] == [429, 429]
    assert (
        requests.get(f"{base}/api/dead-letters", headers={"Authorization": f"Bearer {TOKEN}"}).status_code
        == 429
    )


def test_csrf_is_required_for_every_state_change(web):
    base, env = web
    ident = _dead_letter(env)
    session, csrf = _login(base)
    assert session.post(f"{base}/dead-letters/{ident}/requeue").status_code == 403
    assert session.post(f"{base}/dead-letters/{ident}/requeue", data={"csrf": "wrong"}).status_code == 403
    assert session.post(f"{base}/api/dead-letters/{ident}/requeue").status_code == 403  # cookie, no header
    assert session.post(f"{base}/dead-letters/{ident}/requeue", data={"csrf": csrf}).status_code == 200
    assert json_list(run_cli(env, "dlq", "list", "--json").stdout) == []


def test_a_csrf_token_belongs_to_its_session_and_the_api_takes_it_as_a_header(web):
    base, env = web
    ident = _dead_letter(env)
    session, csrf = _login(base)
    _other, other_csrf = _login(base)
    assert session.post(f"{base}/dead-letters/{ident}/requeue", data={"csrf": other_csrf}).status_code == 403
    assert session.post(
        f"{base}/api/dead-letters/{ident}/requeue", headers={"X-CSRF-Token": csrf}
    ).json() == {"requeued": [ident]}


def test_the_home_is_the_overview_and_every_answer_carries_the_security_headers(web):
    base, _ = web
    session, csrf = _login(base)
    home = session.get(f"{base}/")
    assert home.status_code == 200 and 'id="overview"' in home.text
    answers = [
        home,
        session.get(f"{base}/dead-letters"),
        session.get(f"{base}/queues/"),
        session.get(f"{base}/nope"),
        requests.get(f"{base}/api/overview"),
        session.get(f"{base}/api/assets/nope"),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200, 404, 401, 404]
    for answer in answers:
        assert (
            answer.headers["X-Frame-Options"] == "DENY"
            and answer.headers["X-Content-Type-Options"] == "nosniff"
        )
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        assert (
            answer.headers["Cache-Control"] == "no-store"
            and answer.headers["Referrer-Policy"] == "same-origin"
        )
    assert answers[-1].json() == {"error": "unknown asset"}
    old_link = session.get(f"{base}/?actor=noop&state=", allow_redirects=False)
    assert old_link.status_code == 303 and old_link.headers["Location"] == "/dead-letters?actor=noop&state="
    offsite = post_login(base, "admin", PASSWORD, next_path="//evil.example/")
    assert offsite.status_code == 303 and offsite.headers["Location"] == "/"
    kept = session.cookies.get("worker_session")  # a copy of the cookie, as a stolen one would be
    assert session.post(f"{base}/logout", data={"csrf": csrf}, allow_redirects=False).status_code == 303
    assert session.get(f"{base}/", allow_redirects=False).status_code == 303  # the cookie is gone
    replayed = requests.get(f"{base}/", cookies={"worker_session": kept}, allow_redirects=False)
    assert replayed.status_code == 303  # and its copy opens nothing: logging out revoked the session


def test_an_unexpected_error_answers_500_json_under_api_and_text_on_pages_and_the_server_stays_up(web):
    base, env = web
    session, _ = _login(base)
    db_query(env, "drop table audit_entry")  # a real fault: the audit trail's table is gone
    api = requests.get(f"{base}/api/audit", headers={"Authorization": f"Bearer {TOKEN}"})
    assert api.status_code == 500 and api.json() == {"error": "internal error; see the dashboard logs"}
    page = session.get(f"{base}/audit")
    assert page.status_code == 500 and page.headers["Content-Type"].startswith("text/plain")
    assert "Traceback" not in page.text and "audit_entry" not in page.text  # nothing of the internals leaks
    assert page.headers["X-Frame-Options"] == "DENY"
    assert (
        session.get(f"{base}/dead-letters").status_code == 200
    )  # one bad request did not take the server down


def json_list(text: str) -> list:
    import json

    return json.loads(text or "[]")


def test_script_in_payload_or_error_is_escaped(web):
    base, env = web
    ident = _dead_letter(env, error="<script>alert('err')</script>", tag="<script>alert('payload')</script>")
    session, _ = _login(base)
    for page in (session.get(f"{base}/dead-letters").text, session.get(f"{base}/dead-letters/{ident}").text):
        assert "<script>alert(" not in page
        assert "&lt;script&gt;alert(" in page


def test_api_bearer_token_requeue_and_audit_trail(web, redis_client):
    base, env = web
    ident = _dead_letter(env)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    listed = requests.get(f"{base}/api/dead-letters", headers=headers).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == ident
    assert requests.post(f"{base}/api/dead-letters/{ident}/requeue", headers=headers).json() == {
        "requeued": [ident]
    }
    assert requests.post(f"{base}/api/dead-letters/{ident}/requeue", headers=headers).status_code == 409
    assert (
        requests.get(f"{base}/api/dead-letters", headers=headers).json()["total"] == 0
    )  # dead ones by default
    every_state = requests.get(
        f"{base}/api/dead-letters?state=", headers=headers
    ).json()  # "any": was read as dead
    assert [(d["id"], d["state"]) for d in every_state["items"]] == [(ident, "requeued")]
    assert redis_client.llen("dramatiq:tests") == 1  # the message is back on its queue
    audit = requests.get(f"{base}/api/audit", headers=headers).json()
    assert [(a["action"], a["count"]) for a in audit] == [("requeue", 0), ("requeue", 1)]
    assert all(a["who"] == "token:api@127.0.0.1" for a in audit)
    assert (
        requests.get(f"{base}/api/dead-letters", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )


def test_the_api_pages_by_cursor_and_the_list_page_by_before(web):
    """Keyset paging: each page an index range however deep; the offset of old callers still works."""
    base, env = web
    ids = sorted((_dead_letter(env, tag=f"t{i}") for i in range(7)), reverse=True)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    seen, cursor = [], None
    while True:
        page = requests.get(
            f"{base}/api/dead-letters",
            params={"limit": 3, **({"cursor": cursor} if cursor else {})},
            headers=headers,
        ).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids and page["total"] == 7
    offset = requests.get(f"{base}/api/dead-letters?limit=3&offset=3", headers=headers).json()
    assert [item["id"] for item in offset["items"]] == ids[3:6]
    session, _ = _login(base)
    older = session.get(f"{base}/dead-letters?before={ids[1]}").text
    assert f'href="/dead-letters/{ids[2]}"' in older and f'href="/dead-letters/{ids[1]}"' not in older


def test_health_metrics_queues_and_asset_api(web, redis_client):
    base, env = web
    _dead_letter(env, actor="process_asset")
    assert requests.get(f"{base}/healthz").json()["alive"] is True
    ready = requests.get(f"{base}/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    metrics = requests.get(f"{base}/metrics").text
    assert 'worker_dead_letters{actor="process_asset"} 1.0' in metrics
    assert 'worker_queue_depth{queue="assets"}' in metrics
    session, csrf = _login(base)
    queues_page = session.get(f"{base}/queues/")
    assert queues_page.status_code == 200
    assert (
        'href="/dead-letters"' in queues_page.text and "Log out" in queues_page.text
    )  # the same header everywhere
    assert session.post(f"{base}/queues/assets/requeue", data={"csrf": csrf}).status_code in (
        404,
        405,
    )  # read-only
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(f"{base}/api/assets/nope", headers=headers).status_code == 404


def test_refuses_to_start_without_credentials_unless_insecure_local(worker_env):
    env = {**worker_env, "WEB_PORT": str(free_port())}
    result = run_cli(env, "web", timeout=20)
    assert result.returncode == 2 and "refusing" in result.stderr
    env_public = {**env, "WEB_HOST": "0.0.0.0"}
    assert run_cli(env_public, "web", "--insecure-local", timeout=20).returncode == 2


def test_insecure_local_needs_no_login_but_still_the_csrf_token(start_web):
    base, env = start_web("--insecure-local", WEB_PASSWORD="", WEB_API_TOKEN="")
    ident = _dead_letter(env)
    local = requests.Session()
    page = local.get(f"{base}/dead-letters")
    assert page.status_code == 200 and "local (operator)" in page.text
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert local.post(f"{base}/dead-letters/{ident}/requeue").status_code == 403
    assert local.post(f"{base}/dead-letters/{ident}/requeue", data={"csrf": csrf}).status_code == 200
    assert json.loads(run_cli(env, "dlq", "audit", "--json").stdout)[0]["who"] == "local@127.0.0.1"


def test_browser_login_requeue_bulk_delete_and_screenshots(web, chromium_path, start_worker, redis_client):
    base, env = web
    requeue_me = _dead_letter(env, actor="noop", tag="from-browser")
    for i in range(3):
        _dead_letter(env, actor="permanent", error=f"bad input {i}", tag=f"p{i}")
    start_worker(env=env)
    with _browser_page(chromium_path, f"{base}/dead-letters", "admin", PASSWORD, height=900) as page:
        page.wait_for_selector("text=Failed messages")
        assert page.locator("tbody tr").count() == 4
        page.screenshot(path=str(ARTIFACTS / "dashboard-list.png"), full_page=True)
        page.click(f"a[href='/dead-letters/{requeue_me}']")
        page.wait_for_selector("#final-error")
        assert "boom" in page.inner_text("#final-error")
        page.screenshot(path=str(ARTIFACTS / "dashboard-detail.png"), full_page=True)
        page.click("#requeue")
        page.wait_for_selector("#flash")
        assert "Requeued" in page.inner_text("#flash")
        wait_for(
            lambda: b"from-browser" in redis_client.lrange("wtest:done", 0, -1), 30, what="the worker ran it"
        )
        page.goto(f"{base}/?actor=permanent")  # a link from before /dead-letters: redirected there
        page.click("#delete-all")
        page.wait_for_selector("#confirm")
        assert "Delete 3 dead letters?" in page.inner_text("h1")
        page.click("#confirm")
        page.wait_for_selector("#flash")
        assert "Deleted 3 matching" in page.inner_text("#flash")
        page.goto(f"{base}/audit")
        audit = page.inner_text("table")
        assert "requeue" in audit and "delete" in audit and "user:admin@127.0.0.1" in audit
        page.screenshot(path=str(ARTIFACTS / "dashboard-audit.png"), full_page=True)
    assert json_list(run_cli(env, "dlq", "list", "--json").stdout) == []
    assert os.path.getsize(ARTIFACTS / "dashboard-list.png") > 10_000


def test_a_paused_queue_starts_nothing_loses_nothing_and_resume_picks_everything_up(
    web, start_worker, sender, redis_client
):
    base, env = web
    headers = {"Authorization": f"Bearer {TOKEN}"}
    start_worker(threads=2)
    sender("noop", tag="before")
    wait_for(lambda: redis_client.lrange("wtest:done", 0, -1) == [b"before"], 30, 0.1, "the worker consuming")
    paused = requests.post(f"{base}/api/queues/tests/pause", headers=headers)
    assert paused.status_code == 200 and paused.json() == {"queue": "tests", "paused": True, "changed": True}
    wait_paused_everywhere(redis_client, "tests")  # a pause reaches every consumer within about 2 s
    for i in range(10):
        sender("noop", tag=f"p{i}")
    time.sleep(3)
    assert redis_client.lrange("wtest:done", 0, -1) == [b"before"]  # nothing of the paused queue started
    waiting = redis_client.hlen("dramatiq:tests.msgs") + redis_client.hlen("dramatiq:tests.DQ.msgs")
    assert waiting == 10  # and nothing is lost
    assert requests.post(f"{base}/api/queues/tests/resume", headers=headers).json()["changed"] is True
    wait_for(lambda: redis_client.llen("wtest:done") == 11, 30, 0.2, "everything after resume")
    assert sorted(redis_client.lrange("wtest:done", 1, -1)) == sorted(f"p{i}".encode() for i in range(10))
    audit = requests.get(f"{base}/api/audit", headers=headers).json()
    assert [(a["action"], a["target"]) for a in audit][:2] == [
        ("queue-resume", "tests"),
        ("queue-pause", "tests"),
    ]
    assert requests.post(f"{base}/api/queues/nope/pause", headers=headers).status_code == 404


def test_messages_prefetched_before_a_pause_are_put_back_not_started(web, start_worker, sender, redis_client):
    base, env = web
    headers = {"Authorization": f"Bearer {TOKEN}"}
    start_worker(threads=1)
    sender("sleepy", tag="long", seconds=4)
    wait_for(
        lambda: redis_client.llen("dramatiq:tests") == 0 and redis_client.hlen("dramatiq:tests.msgs") == 1,
        30,
        0.1,
        "the long message running",
    )
    for i in range(3):
        sender("noop", tag=f"q{i}")
    # one thread, a prefetch of two: the consumer takes q0 while the thread is busy, q1 and q2 wait in the queue
    wait_for(lambda: redis_client.llen("dramatiq:tests") == 2, 30, 0.1, "q0 prefetched")
    assert requests.post(f"{base}/api/queues/tests/pause", headers=headers).json()["changed"] is True
    wait_for(
        lambda: b"long" in redis_client.lrange("wtest:done", 0, -1), 30, 0.2, "the running message finished"
    )
    time.sleep(4)
    assert redis_client.lrange("wtest:done", 0, -1) == [b"long"]  # the prefetched ones went back, unstarted
    assert redis_client.hlen("dramatiq:tests.msgs") + redis_client.hlen("dramatiq:tests.DQ.msgs") == 3
    requests.post(f"{base}/api/queues/tests/resume", headers=headers)
    wait_for(lambda: redis_client.llen("wtest:done") == 4, 30, 0.2, "all after resume")


def test_the_overview_lists_queues_workers_and_what_they_run(web, start_worker, sender, redis_client):
    base, env = web
    headers = {"Authorization": f"Bearer {TOKEN}"}
    worker = start_worker(threads=2)
    sender("sleepy", tag="shown", seconds=6)
    for i in range(3):
        sender("noop", queue="tests", tag=f"o{i}")

    def busy() -> dict | None:
        rows = requests.get(f"{base}/api/overview", headers=headers).json()["workers"]
        return next((w for w in rows if w["busy"] >= 1), None)

    shown = wait_for(busy, 30, 0.3, "a worker process running the sleepy message")
    assert shown["threads"] == 2 and shown["rss_bytes"] > 10_000_000 and shown["heartbeat_age_seconds"] < 5
    assert shown["pid"] != worker.process.pid  # a worker process, not the main one
    assert "sleepy" in [c["actor"] for c in shown["current"]]  # (a noop may be caught running beside it)
    body = requests.get(f"{base}/api/overview", headers=headers).json()
    tests_queue = next(q for q in body["queues"] if q["name"] == "tests")
    assert {"name", "depth", "delayed", "in_flight", "paused"} <= set(tests_queue) and tests_queue[
        "paused"
    ] is False
    assert {"openrouter", "kommo"} <= set(body["upstreams"]) and "spend_today_usd" in body["upstreams"][
        "openrouter"
    ]
    assert all("rate_used_rps" in body["upstreams"][u] for u in ("openrouter", "kommo"))
    assert body["dead_letters_last_hour"] == {} and body["events"]["pending"] == 0
    assert requests.get(f"{base}/api/overview").status_code == 401


def test_an_assets_history_lists_every_transition_of_its_text_and_knowledge(web, start_worker, redis_client):
    from worker_contracts import Sender

    base, env = web
    headers = {"Authorization": f"Bearer {TOKEN}"}
    Path(env["STORAGE_ROOT"], "h1.txt").write_text("a short story\n")
    start_worker(threads=2)
    sender = Sender(redis_client)
    sender.process_asset("h1", "file:h1.txt")
    sender.process_asset("h2", "file:missing.txt")  # fetch_failed: retried, then dead

    def history(asset_id: str) -> list[dict]:
        response = requests.get(f"{base}/api/assets/{asset_id}/history", headers=headers)
        return response.json() if response.status_code == 200 else []

    wait_for(
        lambda: any(h["track"] == "knowledge" and h["status"] == "skipped" for h in history("h1")),
        60,
        0.3,
        "h1's knowledge skipped",
    )
    assert [(h["track"], h["status"], h["attempt"]) for h in history("h1")] == [
        ("asset", "processing", 1),
        ("asset", "extracted", 1),
        ("knowledge", "processing", 1),
        ("knowledge", "skipped", 1),
    ]
    assert set(history("h1")[0]) == {"at", "track", "status", "attempt", "error_code"}
    wait_for(lambda: history("h2") and history("h2")[-1]["status"] == "failed", 60, 0.3, "h2 failed")
    assert history("h2")[-1]["error_code"] == "fetch_failed"
    assert requests.get(f"{base}/api/assets/nope/history", headers=headers).status_code == 404


def test_an_assets_page_shows_its_knowledge_graph_as_tables_and_a_picture(
    start_web, knowledge_env, start_worker, redis_client
):
    from worker_contracts import Sender

    base, _ = start_web()
    Path(knowledge_env["STORAGE_ROOT"], "kg.txt").write_text(
        "Alice met Bob in Paris to discuss Acme with Carol. " * 5
    )
    start_worker(env=knowledge_env, threads=2)
    Sender(redis_client).process_asset("kg", "file:kg.txt")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    wait_for(
        lambda: (
            requests.get(f"{base}/api/assets/kg", headers=headers).json().get("knowledge_status") == "done"
        ),
        60,
        0.3,
        "kg's knowledge done",
    )
    graph = requests.get(f"{base}/api/assets/kg/graph", headers=headers).json()
    names = {e["name"] for e in graph["entities"]}
    assert {"Alice", "Bob", "Paris"} <= names and graph["relations"]
    page = requests.get(f"{base}/assets/kg", headers=headers).text
    ids = {e["name"]: e["id"] for e in graph["entities"]}
    assert "<svg" in page and all(f'<a href="/entities/{ids[name]}">{name}</a>' in page for name in names)
    assert f"The picture shows {min(12, len(names))} of\n{len(names)} entities" in page
    relation = graph["relations"][0]
    assert (
        f'<a href="/entities/{relation["source_id"]}">{relation["source"]}</a></td>\n<td>{relation["type"]}</td>'
        in page
    )
    download = requests.get(f"{base}/assets/kg/text", headers=headers)
    assert (
        download.text.startswith("Alice met Bob") and "attachment" in download.headers["Content-Disposition"]
    )


def _add_user(env: dict[str, str], name: str, role: str, password: str) -> None:
    import subprocess

    from tests.support.helpers import BIN

    done = subprocess.run(
        [str(BIN / "worker"), "users", "add", name, "--role", role],
        input=password + "\n",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and f" {name} ({role})" in done.stdout, done.stderr  # added or updated


def _login_as(base: str, user: str, password: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    response = post_login(base, user, password, session=session, next_path="/")
    assert response.status_code == 303, response.text
    page = session.get(f"{base}/").text
    return session, page.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_a_viewer_reads_everything_and_changes_nothing_and_the_audit_names_the_operator(web, redis_client):
    from tests.support.helpers import db_query

    base, env = web
    _add_user(env, "vera", "viewer", "viewer-password-1")
    _add_user(env, "otto", "operator", "operator-password-1")
    stored = db_query(env, "select name, role, password_hash from dashboard_user order by name")
    assert [(n, r) for n, r, _ in stored] == [("otto", "operator"), ("vera", "viewer")]
    assert all(h.startswith("$argon2id$") and "password" not in h for _, _, h in stored)  # hashed, not kept
    listed = json.loads(run_cli(env, "users", "list").stdout)
    assert [(u["name"], u["role"]) for u in listed] == [("otto", "operator"), ("vera", "viewer")]
    ident = _dead_letter(env)

    viewer, csrf = _login_as(base, "vera", "viewer-password-1")
    assert (
        "vera" in viewer.get(f"{base}/").text
        and viewer.get(f"{base}/dead-letters/{ident}").status_code == 200
    )
    assert (
        viewer.get(f"{base}/api/overview").status_code == 200
        and viewer.get(f"{base}/events").status_code == 200
    )
    for path in (
        f"/dead-letters/{ident}/requeue",
        f"/api/dead-letters/{ident}/requeue",
        "/api/queues/tests/pause",
        "/events/1/resend",
        "/dead-letters/bulk",
    ):
        assert viewer.post(f"{base}{path}", data={"csrf": csrf}).status_code == 403, path
    assert viewer.post(f"{base}/logout", data={"csrf": csrf}, allow_redirects=False).status_code == 303

    operator, csrf = _login_as(base, "otto", "operator-password-1")
    assert operator.post(f"{base}/dead-letters/{ident}/requeue", data={"csrf": csrf}).status_code == 200
    audit = operator.get(f"{base}/api/audit").json()
    assert audit[0]["action"] == "requeue" and audit[0]["who"] == "user:otto@127.0.0.1"
    _add_user(env, "otto", "viewer", "operator-password-1")  # demoted: the open session reads only, at once
    assert operator.post(f"{base}/api/queues/tests/pause", headers={"X-CSRF-Token": csrf}).status_code == 403
    assert run_cli(env, "users", "remove", "otto").returncode == 0  # removed: the session ends at once
    assert operator.get(f"{base}/", allow_redirects=False).status_code == 303
    bad = post_login(base, "vera", "wrong-password", next_path="/")
    assert bad.status_code == 401
    assert run_cli(env, "users", "remove", "vera").returncode == 0
    assert post_login(base, "vera", "viewer-password-1", next_path="/").status_code == 401


def test_a_trusted_proxys_user_header_logs_in_with_the_users_role_and_no_one_else_can_send_it(start_web):
    base, env = start_web(WEB_PROXY_USER_HEADER="X-Forwarded-User", WEB_PROXY_ADDRESSES="127.0.0.1")
    _add_user(env, "otto", "operator", "operator-password-1")
    ident = _dead_letter(env)
    otto = requests.Session()
    otto.headers["X-Forwarded-User"] = "otto"  # what oauth2-proxy adds to every request it lets through
    page = otto.get(f"{base}/dead-letters")
    assert page.status_code == 200 and "user:otto (operator)" in page.text
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert otto.post(f"{base}/dead-letters/{ident}/requeue").status_code == 403  # CSRF still applies
    assert otto.post(f"{base}/dead-letters/{ident}/requeue", data={"csrf": csrf}).status_code == 200
    stranger = requests.Session()
    stranger.headers["X-Forwarded-User"] = "zed"  # known to the proxy, not to us: a viewer
    csrf = stranger.get(f"{base}/").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert stranger.post(f"{base}/overview/queues/assets/pause", data={"csrf": csrf}).status_code == 403
    assert run_cli(env, "dlq", "audit", "--json").stdout.count('"user:otto@127.0.0.1"') == 1

    elsewhere, _ = start_web(WEB_PROXY_USER_HEADER="X-Forwarded-User", WEB_PROXY_ADDRESSES="10.1.2.3")
    forged = requests.get(f"{elsewhere}/", headers={"X-Forwarded-User": "otto"}, allow_redirects=False)
    assert forged.status_code == 303 and forged.headers["Location"].startswith("/login")  # not from the proxy


def test_browser_overview_pause_resume_asset_story_and_a_viewer_refused(
    web, chromium_path, start_worker, sender, redis_client
):
    """Chromium as an operator: the overview shows a queue growing while paused, resume drains it; an asset's
    page tells its story; a viewer sees everything and every action is refused."""
    from worker_contracts import Sender

    base, env = web
    Path(env["STORAGE_ROOT"], "story.txt").write_text("Alice met Bob in Paris.\n")
    _add_user(env, "vera", "viewer", "viewer-password-1")
    start_worker(env=env, threads=2)
    Sender(redis_client).process_asset("story", "file:story.txt")
    wait_for(
        lambda: (
            run_cli(env, "asset", "story", "--json").returncode == 0
            and json.loads(run_cli(env, "asset", "story", "--json").stdout)["knowledge_status"] == "skipped"
        ),
        60,
        0.5,
        "the asset's story",
    )
    with _browser_page(chromium_path, f"{base}/", "admin", PASSWORD, height=1000) as page:
        page.wait_for_selector("#queues")
        page.click("#pause-tests")
        page.wait_for_selector("#resume-tests")
        wait_paused_everywhere(redis_client, "tests")
        for i in range(5):
            sender("noop", tag=f"b{i}")
        # the page refreshes itself: the paused queue's 5 messages show up without a reload
        page.wait_for_function(
            "() => [...document.querySelectorAll('#queues tr')].some("
            "r => r.innerText.startsWith('tests') && r.innerText.includes('paused') && "
            "r.cells[1].innerText === '5')",
            timeout=20_000,
        )
        assert redis_client.llen("wtest:done") == 0
        page.screenshot(path=str(ARTIFACTS / "overview-paused.png"), full_page=True)
        page.click("#resume-tests")
        wait_for(lambda: redis_client.llen("wtest:done") == 5, 30, 0.2, "drained after resume")
        page.wait_for_function(
            "() => [...document.querySelectorAll('#queues tr')].some("
            "r => r.innerText.startsWith('tests') && r.cells[1].innerText === '0')",
            timeout=20_000,
        )
        assert page.locator("#workers tbody tr").count() >= 1
        page.goto(f"{base}/queues/")
        page.wait_for_selector("header >> text=Overview")
        page.screenshot(path=str(ARTIFACTS / "queues-in-layout.png"), full_page=True)
        page.goto(f"{base}/")
        page.fill("input[name=id]", "story")
        page.press("input[name=id]", "Enter")
        page.wait_for_selector("#history")
        history = page.inner_text("#history")
        assert "extracted" in history and "skipped" in history
        assert "Alice met Bob" in page.inner_text("#text")
        page.screenshot(path=str(ARTIFACTS / "asset-story.png"), full_page=True)
        page.click("text=Log out")
        _browser_login(page, f"{base}/", "vera", "viewer-password-1")
        page.wait_for_selector("#queues")
        assert page.locator("#pause-tests").count() == 0  # no action offered to a viewer
        csrf = page.eval_on_selector("input[name=csrf]", "e => e.value")
        refused = page.request.post(f"{base}/overview/queues/tests/pause", form={"csrf": csrf})
        assert refused.status == 403
        page.screenshot(path=str(ARTIFACTS / "overview-viewer.png"), full_page=True)
    assert redis_client.smembers("dramatiq:__paused_queues__") == set()


def test_purging_a_queue_needs_its_count_confirmed_and_ends_the_records_it_drops(web, redis_client):
    from worker_contracts import Sender

    base, env = web
    headers = {"Authorization": f"Bearer {TOKEN}"}
    sender = Sender(redis_client)
    for i in range(3):  # no worker runs: they wait
        sender.process_asset(f"gone{i}", f"file:gone{i}.txt")
    refused = requests.post(f"{base}/api/queues/assets/purge?confirm=2", headers=headers)
    assert refused.status_code == 409 and refused.json()["waiting"] == 3  # the confirmation names how many go
    done = requests.post(f"{base}/api/queues/assets/purge?confirm=3", headers=headers).json()
    assert done == {"queue": "assets", "purged": 3, "records_failed": 3}
    assert redis_client.llen("dramatiq:assets") == 0 and redis_client.hlen("dramatiq:assets.msgs") == 0
    record = json.loads(run_cli(env, "asset", "gone1", "--json").stdout)
    assert (record["status"], record["error_code"]) == (
        "failed",
        "purged",
    )  # the reconciler will not rebuild it
    audit = requests.get(f"{base}/api/audit", headers=headers).json()
    assert (audit[0]["action"], audit[0]["target"], audit[0]["count"]) == ("queue-purge", "assets", 3)
    session, csrf = _login(base)
    page = session.get(f"{base}/overview/queues/assets/purge").text
    assert "0 messages will be deleted" in page


def test_the_purge_confirmation_names_the_delayed_retries_workers_hold(
    web, start_worker, sender, redis_client
):
    """Issue 41: two retries due in a minute, held by a worker: the confirmation says they exist, that a purge
    cannot reach them now and what to do, instead of a bare "0 messages will be deleted"."""
    base, env = web
    start_worker(env=env)
    due = int(time.time() * 1000) + 60_000
    for i in range(2):
        sender("noop", queue="tests.DQ", options={"eta": due}, tag=f"later{i}")
    wait_for(
        lambda: redis_client.llen("dramatiq:tests.DQ") == 0, 30, 0.1, "the worker holding the delayed two"
    )
    session, _csrf = _login(base)
    page = session.get(f"{base}/overview/queues/tests/purge").text
    assert "0 messages will be deleted" in page and "2 delayed messages (retries and deferrals)" in page
    refused = requests.post(
        f"{base}/api/queues/tests/purge?confirm=2", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert refused.status_code == 409 and refused.json()["held_delayed"] == 2


HOSTILE_NEXT = [
    "/\t/evil.example",
    "/%09/evil.example",
    "/\n/evil.example",
    "//evil.example",
    "/\\evil.example",
    "/%5C/evil.example",
    "/%2F/evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    "\\\\evil.example",
    " //evil.example",
]


@pytest.mark.parametrize("hostile", HOSTILE_NEXT)
def test_a_hostile_next_after_login_never_leaves_the_host(web, hostile):
    """Regression (the attacker's probe): /login?next=/%09/evil.example answered Location: //evil.example."""
    base, _ = web
    response = post_login(base, "admin", PASSWORD, next_path=hostile)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    page = requests.get(f"{base}/login", params={"next": hostile}).text
    assert "evil.example" not in page


def test_a_state_change_from_another_sites_origin_is_refused_even_with_the_token(web):
    base, env = web
    ident = _dead_letter(env)
    session, csrf = _login(base)
    for header in (
        {"Origin": "http://evil.example"},
        {"Referer": "http://evil.example/page"},
        {"Origin": "null"},
    ):
        refused = session.post(
            f"{base}/api/dead-letters/{ident}/requeue", headers={"X-CSRF-Token": csrf, **header}
        )
        assert refused.status_code == 403 and "another site" in refused.json()["error"]
    accepted = session.post(
        f"{base}/api/dead-letters/{ident}/requeue", headers={"X-CSRF-Token": csrf, "Origin": base}
    )
    assert accepted.json() == {"requeued": [ident]}


@pytest.mark.parametrize("query", ["page=100000000000000000000", "page=-1", "page=x", "page=²"])
def test_out_of_range_paging_answers_400_not_500(web, query):
    base, _ = web
    session, _csrf = _login(base)
    assert session.get(f"{base}/dead-letters?{query}").status_code == 400
    api = session.get(f"{base}/api/dead-letters?{query.replace('page', 'offset')}")
    assert api.status_code == 400 and "offset" in api.json()["error"]


def _forged_cookie(key: bytes, payload: dict[str, object]) -> str:
    """A session cookie signed the way Flask signs one, with ``key``."""
    import hashlib

    from flask.json.tag import TaggedJSONSerializer
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer(
        key,
        salt="cookie-session",
        serializer=TaggedJSONSerializer(),
        signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
    ).dumps(payload)


def test_a_cookie_signed_with_a_key_derived_from_the_password_is_refused(web):
    """Regression (the attacker's probe): the key was sha256("session:" + WEB_PASSWORD), so any cookie let a
    password be guessed offline, and the password found signed an operator's cookie."""
    import hashlib

    base, _ = web
    old_key = hashlib.sha256(f"session:{PASSWORD}".encode()).digest()
    for payload in (
        {"user": "admin", "named": False, "id": "forged", "_permanent": True},
        {"user": "admin", "named": False, "id": "forged", "_permanent": True, "stamp": "0" * 32},
    ):
        forged = requests.Session()
        forged.cookies.set("worker_session", _forged_cookie(old_key, payload))
        assert forged.get(f"{base}/api/overview").status_code == 401
        assert forged.post(f"{base}/api/queues/knowledge/pause").status_code == 401
        assert forged.get(f"{base}/", allow_redirects=False).status_code == 303


def test_a_password_change_or_a_key_rotation_ends_the_users_sessions(web):
    base, env = web
    _add_user(env, "otto", "operator", "operator-password-1")
    first, _csrf = _login_as(base, "otto", "operator-password-1")
    admin, _ = _login(base)
    _add_user(env, "otto", "operator", "operator-password-1")  # the same password again: nothing ends
    assert first.get(f"{base}/api/overview").status_code == 200
    _add_user(env, "otto", "operator", "operator-password-2")  # a new password: the open session ends
    assert first.get(f"{base}/api/overview").status_code == 401
    assert admin.get(f"{base}/api/overview").status_code == 200  # another user's session goes on
    second, _ = _login_as(base, "otto", "operator-password-2")
    rotated = run_cli(env, "sessions", "rotate")
    assert rotated.returncode == 0 and "rotated" in rotated.stdout
    wait_for(
        lambda: second.get(f"{base}/api/overview").status_code == 401, 15, 0.5, "the rotation read (5 s)"
    )
    assert admin.get(f"{base}/api/overview").status_code == 401


def test_short_passwords_are_refused_at_start_and_at_users_add(worker_env):
    short = run_cli({**worker_env, "WEB_PASSWORD": "short", "WEB_PORT": str(free_port())}, "web", timeout=20)
    assert short.returncode == 2 and "WEB_PASSWORD must have at least 12 characters" in short.stderr
    weak_secret = run_cli(
        {
            **worker_env,
            "WEB_PASSWORD": PASSWORD,
            "WEB_SESSION_SECRET": "0123456789",
            "WEB_PORT": str(free_port()),
        },
        "web",
        timeout=20,
    )
    assert weak_secret.returncode == 2 and "WEB_SESSION_SECRET must have at least 32" in weak_secret.stderr
    import subprocess

    from tests.support.helpers import BIN

    assert run_cli(worker_env, "migrate").returncode == 0
    added = subprocess.run(
        [str(BIN / "worker"), "users", "add", "eve", "--role", "viewer"],
        input="eleven-char\n",
        cwd=ROOT,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 1 and "at least 12 characters" in added.stderr


def test_the_session_cookie_is_secure_over_https_directly_or_per_the_trusted_proxy(start_web):
    base, _ = start_web(WEB_PROXY_ADDRESSES="127.0.0.1")

    def cookie(headers: dict[str, str]) -> str:
        response = post_login(base, "admin", PASSWORD, headers=headers)
        assert response.status_code == 303
        return response.headers["Set-Cookie"]

    assert "Secure" not in cookie({})
    assert "; Secure" in cookie({"X-Forwarded-Proto": "https"})  # from the trusted proxy


def test_a_secret_in_a_queued_message_appears_on_no_page_a_viewer_can_open(web, sender, redis_client):
    """Regression (the attacker's probe): the mounted /queues/ pages showed a webhook's token unmasked, and
    credentials inside a source URL."""
    import re

    base, env = web
    token, password = "wh-token-3f9a2c71", "hunter2-in-url"
    ids = [
        sender("crm_handle_webhook", queue="crm", body="leads%5Bstatus%5D", token=token),
        sender(
            "process_asset",
            queue="assets",
            asset_id="s1",
            source=f"https://ops:{password}@files.example/a.pdf",
        ),
    ]
    redis_ids = {m: json.loads(v)["message_id"] for m, v in redis_client.hgetall("dramatiq:crm.msgs").items()}
    redis_ids.update(
        {m: json.loads(v)["message_id"] for m, v in redis_client.hgetall("dramatiq:assets.msgs").items()}
    )
    assert set(redis_ids.values()) == set(ids)
    _add_user(env, "vera", "viewer", "viewer-password-1")
    viewer, _ = _login_as(base, "vera", "viewer-password-1")
    pages = [
        "/",
        "/api/overview",
        "/queues/",
        "/queues/crm",
        "/queues/assets",
        "/api/queues/crm",
        "/api/queues/assets",
        "/queues/queues/crm",
        "/dead-letters",
        "/api/dead-letters",
        "/events",
        "/audit",
    ]
    seen = {}
    for path in pages:
        response = viewer.get(f"{base}{path}")
        assert response.status_code == 200, path
        seen[path] = response.text
        assert token not in response.text and password not in response.text, path
    message_pages = ["/queues/crm", "/queues/assets", "/api/queues/crm", "/api/queues/assets"]
    assert all(re.search(r"\*\*\*", seen[p]) for p in message_pages)  # the messages are shown, masked
