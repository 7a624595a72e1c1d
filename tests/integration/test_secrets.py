"""No secret reaches a person (issue 40): one run that uses every secret of a fixed list, then every exit read.

Real worker processes (DEBUG logs: Dramatiq's own lines print each message's arguments), a real dashboard with
its log, the CLI, the fake Kommo and OpenRouter with the run's own tokens, and a file server that answers 403
to a source URL carrying a password and a presigned signature."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import requests
from worker_contracts import Sender

from tests.support.fake_kommo import WEBHOOK, FakeKommo
from tests.support.fake_openrouter import FakeOpenRouter
from tests.support.helpers import BIN, ROOT, answers_ok, free_port, post_login, run_cli, wait_for
from tests.support.httpserver import QuietHandler, serve, stop

SECRETS = {
    "kommo token": "kommo-long-lived-Xq7Pz",
    "webhook token": "hook-secret-Vb81Lm",
    "URL password": "urlpass-Ty62Wk",
    "presigned signature": "f00dfeedSIG93c1",
    "OpenRouter key": "sk-or-v1-secret-Rn40Ja",
    "API token": "api-token-secret-Me55Zo",
}


class _Forbidden(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(403)
        self.end_headers()


def _leaks(text: str) -> list[str]:
    return [name for name, value in SECRETS.items() if value in text]


def test_no_secret_appears_in_any_log_line_record_page_or_error(
    worker_env, start_worker, redis_client, tmp_path
):
    kommo = FakeKommo(long_lived_token=SECRETS["kommo token"])
    llm = FakeOpenRouter(key=SECRETS["OpenRouter key"])
    files = serve(_Forbidden)
    web_log = tmp_path / "web.log"
    web = None
    try:
        env = {
            **worker_env,
            "LOG_LEVEL": "DEBUG",
            "KOMMO_BASE_URL": kommo.base_url,
            "KOMMO_ACCESS_TOKEN": SECRETS["kommo token"],
            "KOMMO_WEBHOOK_TOKEN": SECRETS["webhook token"],
            "OPENROUTER_API_KEY": SECRETS["OpenRouter key"],
            "OPENROUTER_BASE_URL": llm.base_url,
            "WEB_API_TOKEN": SECRETS["API token"],
            "WEB_PASSWORD": "correct horse battery staple",
            "FETCH_ALLOW_HTTP": "true",
            "FETCH_ALLOWLIST": "127.0.0.1",
            "ASSETS_MAX_ATTEMPTS": "1",
        }
        worker = start_worker(env=env, threads=4)
        (Path(env["STORAGE_ROOT"]) / "note.txt").write_text(
            "Ann Example signed the contract with Romashka LLC."
        )
        sender = Sender(redis_client)
        source = (
            f"http://bob:{SECRETS['URL password']}@127.0.0.1:{files.server_port}/a.pdf"
            f"?X-Amz-Credential=AKIA&X-Amz-Signature={SECRETS['presigned signature']}"
        )
        sender.process_asset("leaky", source)
        sender.process_asset("fine", "file:note.txt")
        sender.crm_handle_webhook(WEBHOOK, SECRETS["webhook token"])
        sender.crm_handle_webhook(WEBHOOK + "&x=" + "y" * 10_000, "a-forged-token")
        sender.crm_upsert_contact("u-1", "Ann Example", emails=["ann@example.com"])

        port = free_port()
        web_env = {**env, "WEB_PORT": str(port)}
        with web_log.open("wb") as out:
            web = subprocess.Popen(
                [str(BIN / "worker"), "web"], cwd=ROOT, env=web_env, stdout=out, stderr=subprocess.STDOUT
            )
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers_ok(f"{base}/healthz"), 30, 0.2, "dashboard up")

        def record(asset_id: str) -> dict:
            shown = run_cli(env, "asset", asset_id, "--json")
            return json.loads(shown.stdout) if shown.returncode == 0 else {}

        wait_for(lambda: record("leaky").get("status") == "failed", 60, 0.3, "the leaky source failed")
        wait_for(lambda: record("fine").get("knowledge_status") == "done", 60, 0.3, "knowledge done")
        wait_for(lambda: kommo.store["contacts"], 30, 0.3, "contact synced")
        dead = wait_for(
            lambda: json.loads(run_cli(env, "dlq", "list", "--json").stdout or "[]"), 30, 0.3, "dead letters"
        )

        exits: dict[str, str] = {}
        bearer = {"Authorization": f"Bearer {SECRETS['API token']}"}
        for path in (
            "/api/assets/leaky",
            "/api/assets/leaky/history",
            "/api/dead-letters",
            "/api/overview",
            *(f"/api/dead-letters/{d['id']}" for d in dead),
        ):
            exits[f"API {path}"] = requests.get(f"{base}{path}", headers=bearer, timeout=10).text
        add = subprocess.run(
            [str(BIN / "worker"), "users", "add", "vera", "--role", "viewer"],
            cwd=ROOT,
            env=env,
            input="viewer-password-1\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert add.returncode == 0, add.stderr
        viewer = requests.Session()
        assert post_login(base, "vera", "viewer-password-1", session=viewer).status_code == 303
        for path in (
            "/",
            "/assets/leaky",
            "/assets/fine",
            "/dead-letters",
            "/audit",
            "/events",
            "/queues/",
            "/config",
            "/api/config",
            "/assets",
            "/queues/assets",
            "/api/queues/assets",
            *(f"/dead-letters/{d['id']}" for d in dead),
        ):
            exits[f"page {path}"] = viewer.get(f"{base}{path}", timeout=10).text
        for args in (
            ("asset", "leaky"),
            ("asset", "leaky", "--json"),
            ("dlq", "list", "--json"),
            *(("dlq", "show", str(d["id"])) for d in dead),
            ("check", "--verbose"),
        ):
            shown = run_cli(env, *args)
            exits[f"worker {' '.join(args)}"] = shown.stdout + shown.stderr
        mistyped = run_cli({**env, "BROKER_URL": f"mysql://bob:{SECRETS['URL password']}@db/0"}, "asset", "x")
        exits["a mistyped BROKER_URL"] = mistyped.stdout + mistyped.stderr
        exits["event of a dashboard with a wrong token"] = requests.get(
            f"{base}/api/dead-letters",
            headers={"Authorization": f"Bearer {SECRETS['API token']}x"},
            timeout=10,
        ).text

        worker.stop()
        web.terminate()
        web.wait(10)
        worker_lines = worker.log_path.read_text(errors="replace")
        exits["worker log"] = worker_lines
        exits["dashboard log"] = web_log.read_text(errors="replace")
        assert (
            "crm_handle_webhook" in worker_lines and "/a.pdf" in worker_lines
        )  # the lines are there, masked
        assert any(d["error_type"] == "forbidden" for d in dead)
        leaks = {where: found for where, text in exits.items() if (found := _leaks(text))}
        assert leaks == {}
    finally:
        if web is not None and web.poll() is None:
            web.kill()
        stop(files)
        kommo.close()
        llm.close()
