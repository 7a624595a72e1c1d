"""The overview's worker list (issue 41): a worker that stops gracefully leaves it at once, one silent past the
heartbeat timeout is shown lost, not live; in Chromium and over the API."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.support.browser import ARTIFACTS
from tests.support.browser import browser_page as _browser_page
from tests.support.helpers import WEB_PASSWORD as PASSWORD
from tests.support.helpers import WEB_TOKEN as TOKEN
from tests.support.helpers import wait_for

API = {"Authorization": f"Bearer {TOKEN}"}


def _workers(base: str) -> list[dict]:
    return requests.get(f"{base}/api/overview", headers=API).json()["workers"]


def test_a_worker_silent_past_the_heartbeat_timeout_is_listed_lost_then_dropped(web, redis_client):
    base, _env = web
    now = time.time()
    for pid, age in ((101, 1), (102, 20), (103, 75), (104, 60 + 600 + 5)):  # heartbeat timeout: 60 s
        redis_client.hset(
            "dramatiq:__workers__",
            f"b-{pid}",
            json.dumps(
                {
                    "host": "h",
                    "pid": pid,
                    "threads": 2,
                    "busy": 1,
                    "queues": ["tests"],
                    "heartbeat_at": now - age,
                    "current": [{"message_id": "m", "actor": "noop", "seconds": 1}],
                }
            ),
        )
    listed = {w["pid"]: w for w in _workers(base)}
    assert {pid: w["state"] for pid, w in listed.items()} == {101: "live", 102: "late", 103: "lost"}
    assert listed[103]["busy"] == 0 and listed[103]["current"] == []  # a lost worker runs nothing we know of
    assert not redis_client.hexists("dramatiq:__workers__", "b-104")  # past the lost time: its report removed


def test_browser_a_gracefully_stopped_worker_leaves_the_list(web, chromium_path, start_worker, redis_client):
    base, env = web
    staying, stopping = start_worker(env=env), start_worker(env=env)
    wait_for(
        lambda: len([w for w in _workers(base) if w["state"] == "live"]) == 2, 60, 0.3, "two live workers"
    )
    with _browser_page(chromium_path, f"{base}/", "admin", PASSWORD, height=900) as page:
        page.wait_for_selector("#workers tr.worker-live")
        assert page.locator("#workers tr.worker-live").count() == 2
        stopping.terminate()
        assert stopping.process.wait(60) == 0
        assert len(_workers(base)) == 1  # at once, not after the heartbeat timeout
        # the page refreshes itself: the stopped worker's row goes without a reload
        page.wait_for_function(
            "() => document.querySelectorAll('#workers tbody tr').length === 1", timeout=20_000
        )
        assert page.locator("#workers tr.worker-live").count() == 1
        page.screenshot(path=str(ARTIFACTS / "overview-worker-stopped.png"), full_page=True)
    assert staying.process.poll() is None


def test_per_actor_numbers_count_what_ran_with_run_time_percentiles(web, start_worker, sender, redis_client):
    """Issue 41 (Flower's tasks by type): /api/actors over the last hour and day, from the workers' own counts."""
    base, env = web
    start_worker(env=env, threads=2)
    for i in range(4):
        sender("sleepy", tag=f"s{i}", seconds=0.3)
    sender("permanent", tag="bad")

    def rows() -> dict[str, dict]:
        return {r["actor"]: r for r in requests.get(f"{base}/api/actors", headers=API).json()["last_hour"]}

    wait_for(
        lambda: rows().get("sleepy", {}).get("done") == 4 and rows().get("permanent", {}).get("failed") == 1,
        60,
        0.5,
        "the counts flushed (every 5 s)",
    )
    sleepy, permanent = rows()["sleepy"], rows()["permanent"]
    assert sleepy["processed"] == 4 and sleepy["failed"] == 0
    assert 0.25 <= sleepy["p50_seconds"] <= 0.5 and sleepy["p95_seconds"] <= 0.5  # the 0.1-0.5 s bucket
    assert permanent["processed"] == 1 and permanent["done"] == 0
    day = {r["actor"]: r for r in requests.get(f"{base}/api/actors", headers=API).json()["last_day"]}
    assert day["sleepy"]["done"] == 4


def test_browser_queue_pages_count_failures_as_the_failed_page_does_and_link_messages_to_assets(
    web, chromium_path, sender, start_worker, redis_client
):
    """Issue 41 (one dashboard): /queues/ is this dashboard's page: failed counts from the dead letters, each
    message's asset linked, masked arguments, and the workers holding messages named as on the overview."""
    import uuid

    from dramatiq.message import Message

    from middleware.deadletters import DeadLetters
    from worker_service.database import init_database, migrate
    from worker_service.errors import PermanentError
    from worker_service.outcome import Dead

    base, env = web
    for asset_id in ("w-1", "w-2"):
        sender("process_asset", queue="assets", asset_id=asset_id, source=f"file:{asset_id}.pdf")
    sender(
        "process_asset",
        queue="assets.DQ",
        options={"eta": int(time.time() * 1000) + 600_000},
        asset_id="d-1",
        source="https://user:hunter2@files.example/d.pdf",
    )
    init_database(env["DATABASE_URL"])
    migrate()
    DeadLetters().record(
        Message(
            queue_name="assets",
            actor_name="process_asset",
            args=(),
            kwargs={"asset_id": "bad-1", "source": "file:x.pdf"},
            options={},
            message_id=str(uuid.uuid4()),
            message_timestamp=int(time.time() * 1000),
        ),
        Dead.of("permanent_error", PermanentError("corrupt", error_code="corrupt"), error_code="corrupt"),
    )
    with _browser_page(chromium_path, f"{base}/queues/", "admin", PASSWORD, height=900) as page:
        page.wait_for_selector("#queue-list")
        row = page.locator("#queue-list tr", has=page.locator("#queue-assets")).inner_text().split("\t")
        assert row[:5] == ["assets", "2", "1", "0", "1"], row  # waiting, delayed, fetched, failed
        page.click("#queue-assets")
        page.wait_for_selector("#waiting")
        assert [a.inner_text() for a in page.locator("#waiting a.asset-link").all()] == ["w-1", "w-2"]
        assert page.locator("#delayed a.asset-link").inner_text() == "d-1"
        assert "hunter2" not in page.content() and "***" in page.inner_text("#delayed")
        page.screenshot(path=str(ARTIFACTS / "queue-assets.png"), full_page=True)
        page.click("text=1 failed")
        page.wait_for_selector("#bulk")
        assert page.locator("a.asset-link[href='/assets/bad-1']").count() == 1  # the same one failure
    start_worker(env=env, threads=1)
    sender("sleepy", tag="held", seconds=5)

    def running() -> list[dict]:
        # fetched first (prefetched), then marked started by the worker's group commit a moment later
        answer = requests.get(f"{base}/api/queues/tests", headers=API)
        return (
            [m for m in answer.json()["fetched"]["messages"] if m["running"]]
            if answer.status_code == 200
            else []
        )

    held = wait_for(running, 30, 0.2, "the worker running the sleepy message")[0]
    holder = held["worker"]
    live = [w for w in _workers(base) if w["state"] == "live"]
    assert holder in {f"{w['host']} pid {w['pid']}" for w in live}  # the overview's name for it
    assert (
        requests.get(f"{base}/queues/queues/assets", headers=API, allow_redirects=False).headers["Location"]
        == "/queues/assets"
    )  # dramatiq-dashboard's links of old


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_charts_count_every_dead_letter_the_failed_page_lists(start_web, worker_env, database, request):
    """Issue 41: the charts said "failed 6" beside 8 dead letters of the last hour: undecodable and unknown-actor
    messages are dead-lettered by the consumer and never reached the counting middleware."""
    import uuid

    from dramatiq.message import Message

    from middleware.deadletters import DeadLetters
    from tests.support.helpers import pg_schema_url
    from worker_service.database import init_database, migrate
    from worker_service.outcome import Dead

    url = (
        worker_env["DATABASE_URL"]
        if database == "sqlite"
        else pg_schema_url(request.getfixturevalue("pg_url"), f"charts_{uuid.uuid4().hex[:8]}")
    )
    base, _env = start_web(DATABASE_URL=url)
    init_database(url)
    migrate()
    sink = DeadLetters()
    sink.record_raw("assets", b"\xff not json", "undecodable", "cannot decode")
    sink.record(
        Message(
            queue_name="crm",
            actor_name="no_such_actor",
            args=(),
            kwargs={},
            options={},
            message_id=str(uuid.uuid4()),
            message_timestamp=int(time.time() * 1000),
        ),
        Dead.of("unknown_actor", KeyError("no_such_actor")),
    )
    sink.record(
        Message(
            queue_name="tests",
            actor_name="noop",
            args=(),
            kwargs={},
            options={},
            message_id=str(uuid.uuid4()),
            message_timestamp=int(time.time() * 1000),
        ),
        Dead.of("retries_exhausted", RuntimeError("boom")),
    )
    overview = requests.get(f"{base}/api/overview", headers=API).json()
    assert sum(overview["dead_letters_last_hour"].values()) == 3
    assert (
        sum(overview["throughput"]["last_hour"]["failed"])
        == 3
        == sum(overview["throughput"]["last_day"]["failed"])
    )


def test_the_overview_says_knowledge_is_off_without_the_key(web):
    """Issue 41: without OPENROUTER_API_KEY every asset showed "knowledge skipped" while the OpenRouter row
    looked healthy."""
    base, _env = web
    upstreams = requests.get(f"{base}/api/overview", headers=API).json()["upstreams"]
    assert upstreams["openrouter"]["off_reason"] == "OPENROUTER_API_KEY is not set"
    from tests.support.helpers import post_login

    session = requests.Session()
    post_login(base, "admin", PASSWORD, session=session)
    assert 'id="off-openrouter"' in session.get(f"{base}/").text
