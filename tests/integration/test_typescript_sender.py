"""The npm package worker-contracts (worker-contracts/typescript): built, type-checked, its own tests run by
Node's test runner, and every actor sent from TypeScript processed by a real worker."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from worker_contracts import InvalidPayload, validate_payload

from tests.support.fake_kommo import WEBHOOK
from tests.support.helpers import ROOT, run_cli, unavailable, wait_for
from tests.support.receiver import EventReceiver

PACKAGE = ROOT / "worker-contracts" / "typescript"
INDEX = PACKAGE / "dist" / "index.js"


@pytest.fixture(scope="module")
def package() -> Path:
    if not shutil.which("node") or not shutil.which("npm"):
        unavailable("node and npm are not installed (Debian: nodejs, npm; .ci/run installs them)")
    installed = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=PACKAGE, capture_output=True, text=True, timeout=600
    )  # `prepare` compiles src/ to dist/
    if installed.returncode != 0 and "ENOTFOUND" in installed.stderr + installed.stdout:
        unavailable(f"the npm registry is unreachable: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    typecheck = subprocess.run(
        ["npm", "run", "typecheck"], cwd=PACKAGE, capture_output=True, text=True, timeout=300
    )
    assert typecheck.returncode == 0, typecheck.stdout[-3000:]
    return PACKAGE


def _node(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script, *args],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_package_passes_its_own_tests_with_node_test_runner(package, redis_url):
    done = subprocess.run(
        ["npm", "test"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=300,
        env={**_path_env(), "WORKER_TEST_REDIS_URL": redis_url},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout and "# skipped 0" in done.stdout
    print(next(line for line in done.stdout.splitlines() if "bulk send" in line))


def _path_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}


BAD_PAYLOADS = [
    ("process_asset", {"asset_id": "a-1"}),
    ("process_asset", {"asset_id": "a 1", "source": "file:x"}),
    ("process_asset", {"asset_id": "a-1", "source": "ftp://x"}),
    ("process_asset", {"asset_id": "a-1", "source": "file:"}),
    ("process_asset", {"asset_id": "a-1", "source": "file:x", "filename": 5}),
    ("process_asset", {"asset_id": "a-1", "source": "file:x", "crm_lead_id": "12"}),
    ("process_asset", {"asset_id": "", "source": "file:x", "surprise": True}),
    ("process_asset", {"source": 7, "extra": 1}),
    ("extract_knowledge", {"asset_id": "a", "surprise": 1}),
    ("extract_knowledge", {}),
    ("crm_upsert_contact", {"external_id": "u-1", "name": "Ann", "emails": ["a"]}),
    ("crm_upsert_contact", {"external_id": "u-1", "name": "", "phones": "123"}),
    ("crm_create_lead", {"external_id": "l-1", "name": "Deal", "price": 1.5}),
    ("crm_add_note", {"entity": "deals", "entity_id": 1, "text": "x", "idempotency_key": "k"}),
    ("crm_add_note", {"entity": "leads", "entity_id": "1", "text": "", "idempotency_key": "k"}),
    ("crm_handle_webhook", {"body": "x"}),
    ("crm_handle_webhook", {"body": "x", "token": None}),
]


def test_an_invalid_payload_is_refused_in_node_with_the_reason_python_gives(package):
    expected = []
    for actor, payload in BAD_PAYLOADS:
        with pytest.raises(InvalidPayload) as refused:
            validate_payload(actor, payload)
        expected.append(refused.value.reason)
    script = f"""
        import {{ validatePayload }} from {json.dumps(str(INDEX))};
        const table = JSON.parse(process.argv[1]);
        console.log(JSON.stringify(table.map(([actor, payload]) => {{
            try {{ validatePayload(actor, payload); return null; }} catch (e) {{ return e.reason; }}
        }})));
    """
    got = json.loads(_node(script, json.dumps(BAD_PAYLOADS)))
    assert got == expected


def test_every_actor_sent_from_typescript_is_processed_by_a_real_worker(
    package, crm_env, start_worker, kommo, redis_client: redis.Redis
):
    Path(crm_env["STORAGE_ROOT"], "from-ts.txt").write_text("sent from TypeScript")
    start_worker(env=crm_env, threads=4)
    script = f"""
        import {{ Sender }} from {json.dumps(str(INDEX))};
        const sender = await Sender.connect(process.argv[1]);
        const ids = [
          await sender.processAsset({{ asset_id: "ts-1", source: "file:from-ts.txt", filename: "from-ts.txt" }}),
          await sender.crmUpsertContact({{ external_id: "ts-u1", name: "Ann TS", emails: ["ann@ts.example"] }}),
          await sender.crmCreateLead({{ external_id: "ts-l1", name: "TS deal", price: 100,
                                        contact_external_id: "ts-u1" }}),
          await sender.crmAddNote({{ entity: "leads", entity_id: 42, text: "from TypeScript",
                                     idempotency_key: "ts-note-1" }}),
          await sender.crmHandleWebhook({{ body: process.argv[2], token: "hook-secret" }}),
        ];
        await sender.close();
        console.log(JSON.stringify(ids));
    """
    ids = json.loads(_node(script, crm_env["BROKER_URL"], WEBHOOK))
    assert len(set(ids)) == 5

    def record(asset_id: str) -> dict:
        out = run_cli(crm_env, "asset", asset_id, "--json")
        return json.loads(out.stdout) if out.returncode == 0 else {}

    wait_for(lambda: record("ts-1").get("status") == "extracted", 60, 0.3, "the asset extracted")
    assert record("ts-1")["chars"] == len("sent from TypeScript")
    wait_for(lambda: record("ts-1").get("knowledge_status") == "skipped", 60, 0.3, "knowledge ended (no key)")
    # extract_knowledge of an asset the worker knows (of an unknown one it is a permanent error, by design)
    again = f"""
        import {{ Sender }} from {json.dumps(str(INDEX))};
        const sender = await Sender.connect(process.argv[1]);
        console.log(await sender.extractKnowledge({{ asset_id: "ts-1" }}));
        await sender.close();
    """
    knowledge_id = _node(again, crm_env["BROKER_URL"]).strip()
    wait_for(lambda: _skips(crm_env, "ts-1") == 2, 60, 0.3, "the second knowledge run (skipped: no key)")
    assert len(knowledge_id) == 36

    def link(kind: str, key: str, *extra: str) -> dict | None:
        out = run_cli(crm_env, "crm", "link", kind, key, *extra)
        return json.loads(out.stdout) if out.returncode == 0 else None

    wait_for(
        lambda: link("contact", "ts-u1") and link("lead", "ts-l1") and link("note", "ts-note-1"),
        60,
        0.3,
        "contact, lead and note in Kommo",
    )
    wait_for(lambda: link("lead", "10701093", "--by-kommo-id"), 30, 0.3, "the webhook's lead status")
    assert run_cli(crm_env, "dlq", "list", "--json").stdout.strip() == "[]"


def _skips(env: dict[str, str], asset_id: str) -> int:
    import sqlite3

    with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///"), timeout=30) as conn:
        return conn.execute(
            "select count(*) from status_change where asset_id=? and track='knowledge' and status='skipped'",
            (asset_id,),
        ).fetchone()[0]


def test_a_newer_minor_contract_version_is_accepted_and_another_major_refused(
    package, worker_env, start_worker
):
    storage = Path(worker_env["STORAGE_ROOT"])
    for name in ("minor", "major"):
        (storage / f"{name}.txt").write_text(f"contract {name}")
    start_worker(env=worker_env)
    script = f"""
        import {{ Sender }} from {json.dumps(str(INDEX))};
        const sender = await Sender.connect(process.argv[1]);
        await sender.processAsset({{ asset_id: "v-minor", source: "file:minor.txt" }}, {{ contractVersion: "1.9" }});
        await sender.processAsset({{ asset_id: "v-major", source: "file:major.txt" }}, {{ contractVersion: "2.0" }});
        await sender.close();
    """
    _node(script, worker_env["BROKER_URL"])
    wait_for(
        lambda: (
            json.loads(run_cli(worker_env, "asset", "v-minor", "--json").stdout or "{}").get("status")
            == "extracted"
        ),
        60,
        0.3,
        "the newer minor processed",
    )
    rows = wait_for(
        lambda: json.loads(run_cli(worker_env, "dlq", "list", "--json").stdout or "[]"),
        60,
        0.3,
        "the other major refused",
    )
    assert [(r["actor"], r["error_type"]) for r in rows] == [("process_asset", "invalid_payload")]
    assert re.search(r"contract version 2\.0 is not understood", rows[0]["error_message"])


def test_an_outcome_event_posted_by_the_worker_verifies_in_typescript_and_a_tampered_one_does_not(
    package, worker_env, start_worker, redis_client
):
    from worker_contracts import Sender

    secret = "ts-events-secret"
    receiver = EventReceiver(secret)
    try:
        env = {**worker_env, "EVENTS_WEBHOOK_URL": receiver.url, "EVENTS_WEBHOOK_SECRET": secret}
        Path(env["STORAGE_ROOT"], "ev.txt").write_text("an event")
        start_worker(env=env)
        Sender(redis_client).process_asset("ev-1", "file:ev.txt")
        wait_for(lambda: receiver.raw, 60, 0.3, "an event posted")
        body, signature = receiver.raw[0]
    finally:
        receiver.close()
    tampered = body.replace(b'"ev-1"', b'"ev-2"')
    assert tampered != body
    script = f"""
        import {{ parseEvent, verifyEvent }} from {json.dumps(str(INDEX))};
        const [body, tampered] = [process.argv[1], process.argv[2]].map((b) => Buffer.from(b, "base64"));
        const [signature, secret] = [process.argv[3], process.argv[4]];
        console.log(JSON.stringify({{
          genuine: verifyEvent(body, signature, secret), event: parseEvent(body, signature, secret),
          tampered: verifyEvent(tampered, signature, secret),
          wrongSecret: verifyEvent(body, signature, "not-the-secret"),
          forgedSignature: verifyEvent(body, "sha256=" + "0".repeat(64), secret),
        }}));
    """
    out = json.loads(
        _node(script, base64.b64encode(body).decode(), base64.b64encode(tampered).decode(), signature, secret)
    )
    assert out["genuine"] is True and out["event"]["asset_id"] == "ev-1"
    assert out["event"]["event"] == "asset.extracted"
    assert out["tampered"] is False and out["wrongSecret"] is False and out["forgedSignature"] is False


def test_the_node_example_sends_with_the_package_and_the_worker_processes_it(
    package, worker_env, start_worker
):
    example = ROOT / "examples" / "node"
    installed = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=example, capture_output=True, text=True, timeout=300
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    Path(worker_env["STORAGE_ROOT"], "from-node.txt").write_text("sent from Node.js")
    start_worker()
    payload = json.dumps({"asset_id": "node-1", "source": "file:from-node.txt", "filename": "from-node.txt"})
    sent = subprocess.run(
        ["node", "send.mjs", "process_asset", payload],
        cwd=example,
        capture_output=True,
        text=True,
        env=worker_env,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    assert len(sent.stdout.strip()) == 36  # the message id, and nothing else
    refused = subprocess.run(
        ["node", "send.mjs", "process_asset", json.dumps({"asset_id": "node-2"})],
        cwd=example,
        capture_output=True,
        text=True,
        env=worker_env,
        timeout=60,
    )
    assert refused.returncode == 1 and "source: Field required" in refused.stderr and refused.stdout == ""
    wait_for(
        lambda: (
            json.loads(run_cli(worker_env, "asset", "node-1", "--json").stdout or "{}").get("status")
            == "extracted"
        ),
        30,
        0.3,
        "the asset",
    )


def test_the_node_sender_reaches_a_sentinel_master_and_waits_for_a_replica_when_asked(package, tmp_path):
    """``redis+sentinel://`` and ``waitReplicas: 1`` from Node: the send returns only once the replica (frozen
    for 0.6 s) has the messages; with the replica gone they are still enqueued, after the time-out, and
    ``onUnreplicated`` says so."""
    from tests.support.sentinel import SentinelCluster

    cluster = SentinelCluster(tmp_path / "sentinel")
    try:
        replica_port = cluster.replica_port()
        script = f"""
            import {{ Sender }} from {json.dumps(str(INDEX))};
            const [url, replicaPid] = process.argv.slice(1);
            const unreplicated = [];
            const sender = await Sender.connect(url, {{ waitReplicas: 1, waitTimeoutMs: 5000 }});
            process.kill(-Number(replicaPid), "SIGSTOP");
            setTimeout(() => process.kill(-Number(replicaPid), "SIGCONT"), 600);
            const started = performance.now();
            await sender.sendMany("extract_knowledge", Array.from({{ length: 100 }}, (_, i) => ({{ asset_id: `n-${{i}}` }})));
            const waited = performance.now() - started;
            console.log(JSON.stringify({{ waited, replicas: sender.lastReplicas }}));
            await sender.close();
            const short = await Sender.connect(url, {{ waitReplicas: 1, waitTimeoutMs: 300,
                onUnreplicated: (info) => unreplicated.push(info) }});
            process.stdin.once("data", async () => {{
                await short.extractKnowledge({{ asset_id: "n-alone" }});
                console.log(JSON.stringify({{ replicas: short.lastReplicas, unreplicated }}));
                await short.close();
            }});
            console.log("ready");
        """
        node = subprocess.Popen(
            [
                "node",
                "--input-type=module",
                "-e",
                script,
                cluster.url,
                str(cluster.processes[replica_port].pid),
            ],
            cwd=PACKAGE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_path_env(),
        )
        try:
            assert node.stdout is not None and node.stdin is not None
            first = json.loads(node.stdout.readline())
            replica = cluster.node(replica_port)
            assert replica.llen("dramatiq:knowledge") == 100
            assert first["replicas"] == 1 and first["waited"] >= 400, first
            assert node.stdout.readline().strip() == "ready"
            cluster.kill_replica()
            node.stdin.write("go\n")
            node.stdin.close()  # or Node keeps listening to it
            second = json.loads(node.stdout.readline())
            assert node.wait(30) == 0
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
        assert second == {
            "replicas": 0,
            "unreplicated": [{"queue": "knowledge", "messages": 1, "replicas": 0, "wanted": 1}],
        }
        assert cluster.node(cluster.master_port()).llen("dramatiq:knowledge") == 101
    finally:
        cluster.close()
