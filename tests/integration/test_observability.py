"""Observability: worker metrics and probes, correlated JSON logs, recycling, alert rules (promtool and a real
Prometheus)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import redis
import requests

from tests.support.helpers import BIN, ROOT, free_port, run_cli, unavailable, wait_for

RULES = ROOT / "deploy" / "prometheus"


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=3)
    except requests.ConnectionError:
        return None


def test_worker_serves_metrics_health_and_readiness(worker_env, start_worker, sender, redis_client):
    port = free_port()
    env = {**worker_env, "METRICS_PORT": str(port)}
    start_worker(env=env, processes=2, threads=2)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: (r := _get(f"{base}/healthz")) is not None and r.status_code == 200, 30, 0.3, "healthz")
    assert _get(f"{base}/readyz").json()["ready"] is True
    sender("noop", tag="m1")
    sender("permanent", tag="m2")
    # a scrape that finds no answer is tried again, as Prometheus would (seen once in a full run: one refused
    # connection while both worker processes were starting under the load of the other xdist worker)
    wait_for(
        lambda: (r := _get(f"{base}/metrics")) is not None and 'outcome="dead"' in r.text, 30, 0.3, "metrics"
    )
    text = _get(f"{base}/metrics").text
    assert 'worker_messages_total{actor="noop",outcome="done",queue="tests"} 1.0' in text
    assert 'worker_messages_total{actor="permanent",outcome="dead",queue="tests"} 1.0' in text
    assert "worker_message_duration_seconds_bucket" in text and "worker_process_rss_bytes" in text
    health = _get(f"{base}/healthz").json()
    assert len(health["heartbeat_age_seconds"]) == 2  # both worker processes


def test_log_lines_inside_a_message_are_json_with_its_context(worker_env, start_worker, sender, redis_client):
    worker = start_worker()
    message_id = sender("poison", tag="log")
    wait_for(
        lambda: any(
            r.get("message_id") == message_id and r.get("logger") == "middleware.deadletters"
            for r in worker.logs()
        ),
        30,
        0.3,
        "the dead-letter log line",
    )
    lines = [r for r in worker.logs() if r.get("message_id") == message_id]
    assert lines and all(r["actor"] == "poison" and r["queue"] in ("tests", "tests.DQ") for r in lines)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in lines)


def test_probes_flip_when_redis_stops(worker_env, start_worker, tmp_path):
    if not shutil.which("redis-server"):
        unavailable("redis-server not installed")
    redis_port, metrics_port = free_port(), free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{redis_port}/0"
        wait_for(lambda: _ping(url), 10, what="redis")
        env = {**worker_env, "BROKER_URL": url, "METRICS_PORT": str(metrics_port), "TEST_RECORD_URL": url}
        start_worker(env=env)
        base = f"http://127.0.0.1:{metrics_port}"
        wait_for(lambda: (r := _get(f"{base}/readyz")) is not None and r.status_code == 200, 30, 0.3, "ready")
        server.terminate()
        server.wait(10)
        # (a Response is falsy for a 503, so compare the body)
        body = wait_for(
            lambda: (r := _get(f"{base}/readyz")) is not None and r.status_code == 503 and r.json(),
            30,
            0.3,
            "not ready",
        )
        assert body["ready"] is False and "Error" in body["broker"]
    finally:
        if server.poll() is None:
            server.terminate()


def _ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def test_worker_past_its_message_limit_is_replaced_without_losing_a_message(
    worker_env, start_worker, sender, redis_client
):
    env = {**worker_env, "WORKER_MAX_MESSAGES": "10"}
    worker = start_worker(env=env, threads=2)
    for i in range(30):
        sender("sleepy", tag=f"r{i}", seconds=0.1)
    wait_for(lambda: len(set(redis_client.lrange("wtest:done", 0, -1))) == 30, 90, 0.3, "all 30 messages")
    done = [x.decode() for x in redis_client.lrange("wtest:done", 0, -1)]
    assert sorted(set(done)) == sorted(f"r{i}" for i in range(30))
    recycles = [r for r in worker.logs() if r.get("message", "").startswith("Recycling worker processes")]
    assert recycles, "the process should have asked for a reload"
    ready = [r["process"] for r in worker.logs() if r.get("message", "").startswith("Worker process ready")]
    assert len(set(ready)) >= 2  # a fresh process took over


def test_alert_rules_pass_their_promtool_unit_tests():
    promtool = shutil.which("promtool")
    if not promtool:
        unavailable("promtool not installed (Debian package prometheus; .ci/run installs it)")
    subprocess.run([promtool, "check", "rules", str(RULES / "alerts.yml")], check=True, capture_output=True)
    result = subprocess.run(
        [promtool, "test", "rules", str(RULES / "alerts_test.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_real_prometheus_scrapes_and_a_dead_letter_turns_the_alert_pending(
    worker_env, start_worker, sender, tmp_path, redis_client
):
    prometheus = shutil.which("prometheus")
    if not prometheus:
        unavailable("prometheus not installed (Debian package prometheus; .ci/run installs it)")
    worker_port, web_port, prom_port = free_port(), free_port(), free_port()
    env = {**worker_env, "METRICS_PORT": str(worker_port), "WEB_PORT": str(web_port), "WEB_API_TOKEN": "t"}
    start_worker(env=env)
    web = subprocess.Popen(
        [str(BIN / "worker"), "web"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    rules = tmp_path / "alerts.yml"
    rules.write_text((RULES / "alerts.yml").read_text())
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {"job_name": "worker", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
                    {"job_name": "dashboard", "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}]},
                ],
            }
        )
    )
    prom = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    try:
        wait_for(
            lambda: (
                (r := _get(f"{api}/targets")) is not None
                and sum(t["health"] == "up" for t in r.json()["data"]["activeTargets"]) == 2
            ),
            60,
            0.5,
            "both targets up",
        )
        sender("permanent", tag="alert")
        query = f"{api}/query?query=worker_dead_letters"
        wait_for(
            lambda: (r := _get(query)) is not None and r.json()["data"]["result"],
            60,
            0.5,
            "dead-letter gauge",
        )

        def pending() -> list:
            r = _get(f"{api}/alerts")
            return [
                a
                for a in (r.json()["data"]["alerts"] if r else [])
                if a["labels"]["alertname"] == "WorkerDeadLetters" and a["state"] == "pending"
            ]

        alert = wait_for(pending, 60, 0.5, "WorkerDeadLetters pending")[0]
        assert alert["labels"]["actor"] == "permanent"
        # the worker's counter and the dashboard's gauge are scraped apart: the alert can come first
        wait_for(
            lambda: any(
                s["metric"].get("outcome") == "dead"
                for s in _get(f"{api}/query?query=worker_messages_total").json()["data"]["result"]
            ),
            30,
            0.5,
            "the dead outcome counted",
        )
        failures = wait_for(
            lambda: _get(f"{api}/query?query=worker_failures_total").json()["data"]["result"],
            30,
            0.5,
            "the failure counted by its code (Grafana's errors by code)",
        )
        assert failures[0]["metric"]["actor"] == "permanent" and failures[0]["metric"]["error_code"]
    finally:
        prom.terminate()
        web.terminate()
        prom.wait(10)
        web.wait(10)


def test_check_warns_about_a_redis_that_would_evict_queued_work(worker_env, tmp_path):
    if not shutil.which("redis-server"):
        unavailable("redis-server not installed")
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "allkeys-lru",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: _ping(url), 10, what="redis")
        result = run_cli({**worker_env, "BROKER_URL": url}, "check")
        assert result.returncode == 0
        assert "WARN Redis maxmemory-policy is allkeys-lru" in result.stdout
        assert "WARN Redis appendonly is off" in result.stdout
    finally:
        server.terminate()
        server.wait(10)


def _rotel_spans(log: str) -> list[dict[str, str]]:
    import re

    spans, service = [], ""
    for block in re.split(r"(?=ResourceSpans #|Span #)", log):
        found = re.search(r"service\.name: Str\(([^)]*)\)", block)
        if block.startswith("ResourceSpans") and found:
            service = found.group(1)
        if block.startswith("Span #"):
            fields = dict(re.findall(r"^\s*(Trace ID|Parent ID|ID|Name|Kind)\s*: ?(.*)$", block, re.M))
            spans.append({**{k: v.strip() for k, v in fields.items()}, "service": service})
    return spans


def test_otlp_receiver_gets_send_and_process_spans_of_one_trace_from_two_processes(
    worker_env, start_worker, redis_client, tmp_path
):
    agent = Path(__import__("rotel").__file__).parent / "rotel-agent"
    if not agent.exists():
        unavailable("rotel (PyPI) is not installed")
    http_port, grpc_port = free_port(), free_port()
    log = tmp_path / "rotel.log"
    rotel = subprocess.Popen(
        [
            str(agent),
            "start",
            "--otlp-http-endpoint",
            f"127.0.0.1:{http_port}",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{grpc_port}",
            "--exporter",
            "blackhole",
            "--debug-log",
            "traces",
            "--debug-log-verbosity",
            "detailed",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{http_port}"}
        storage = Path(worker_env["STORAGE_ROOT"])
        (storage / "t.txt").write_text("traced")
        worker = start_worker(env={**worker_env, **otel, "OTEL_SERVICE_NAME": "worker"})
        sender_code = (
            "from settings import load_settings; from worker_service.observability.telemetry import configure_telemetry; "
            "configure_telemetry(load_settings(), 'product-web'); import redis; "
            "from worker_contracts import Sender; from opentelemetry import trace; "
            f"print(Sender(redis.Redis.from_url('{worker_env['BROKER_URL']}')).process_asset('tr1', "
            "'file:t.txt')); trace.get_tracer_provider().shutdown()"
        )
        subprocess.run(
            [str(BIN / "python"), "-c", sender_code],
            cwd=ROOT,
            check=True,
            capture_output=True,
            env={**worker_env, **otel, "OTEL_SERVICE_NAME": "product-web"},
        )

        def trace_spans() -> list[dict[str, str]]:
            spans = _rotel_spans(log.read_text(errors="replace"))
            sends = [s for s in spans if s.get("Name") == "send assets" and s["service"] == "product-web"]
            if not sends:
                return []
            same = [s for s in spans if s.get("Trace ID") == sends[0]["Trace ID"]]
            return same if any(s.get("Name") == "process assets" for s in same) else []

        spans = wait_for(trace_spans, 60, 0.5, "send and process spans in rotel")
        send = next(s for s in spans if s["Name"] == "send assets")
        process = next(s for s in spans if s["Name"] == "process assets")
        assert send["Kind"] == "SPAN_KIND_PRODUCER" and process["Kind"] == "SPAN_KIND_CONSUMER"
        assert process["Parent ID"] == send["ID"] and process["service"] == "worker"
        # the worker's own enqueue (extract_knowledge) continues the same trace
        wait_for(
            lambda: any(s.get("Name") == "send knowledge" for s in trace_spans()), 30, 0.5, "the next hop"
        )
        lines = [r for r in worker.logs() if r.get("asset_id") == "tr1" and r.get("trace_id")]
        assert lines and all(r["trace_id"] == send["Trace ID"] for r in lines)
    finally:
        rotel.terminate()
        rotel.wait(10)


def test_sentry_envelope_reaches_a_fake_dsn_without_secrets(worker_env, start_worker, sender):
    import gzip

    from tests.support.httpserver import QuietHandler, serve, stop

    received: list[bytes] = []

    class Handler(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            elif self.headers.get("Content-Encoding") == "br":
                import brotli

                body = brotli.decompress(body)
            received.append(body)
            self.send_response(200)
            self.end_headers()

    server = serve(Handler)
    secret = "kommo-hook-secret-XYZ"
    env = {
        **worker_env,
        "SENTRY_DSN": f"http://publickey@127.0.0.1:{server.server_port}/1",
        "KOMMO_WEBHOOK_TOKEN": secret,
    }
    try:
        start_worker(env=env)
        sender("leaky", token=secret)
        wait_for(
            lambda: any(b"upstream refused credentials" in r for r in received), 30, 0.3, "a Sentry envelope"
        )
        envelope = b"".join(received)
        assert secret.encode() not in envelope
        assert b"[Filtered]" in envelope
    finally:
        stop(server)


def test_worker_over_its_memory_cap_is_replaced_without_losing_a_message(
    worker_env, start_worker, sender, redis_client
):
    env = {
        **worker_env,
        "WORKER_MAX_RSS_MB": "40",
    }  # a worker process is ~60 MB: over the cap after each message
    worker = start_worker(env=env, threads=1)
    for i in range(4):
        sender("sleepy", tag=f"m{i}", seconds=0.1)
    wait_for(lambda: len(set(redis_client.lrange("wtest:done", 0, -1))) == 4, 120, 0.3, "all 4 messages")
    assert sorted({x.decode() for x in redis_client.lrange("wtest:done", 0, -1)}) == [
        f"m{i}" for i in range(4)
    ]
    recycles = [
        r for r in worker.logs() if r.get("message", "").startswith("Recycling worker processes: RSS")
    ]
    assert recycles


def test_expected_outcomes_write_no_error_line_and_no_traceback_and_a_crash_still_does(
    worker_env, start_worker, sender, redis_client
):
    """Issue 41: an encrypted and a corrupt PDF, a missing file and a name that does not resolve end as the service
    classified them, each in one INFO/WARNING line with its code; Dramatiq's ERROR line with a traceback is kept
    for the unexpected only (a KeyError in an actor)."""
    import shutil as _shutil
    from pathlib import Path

    from worker_contracts import Sender

    corpus = Path(__file__).resolve().parents[1] / "corpus"
    storage = Path(worker_env["STORAGE_ROOT"])
    _shutil.copy(corpus / "pdf" / "pypdf__r6-user-password.pdf", storage / "locked.pdf")
    (storage / "broken.pdf").write_bytes(
        b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\n" + b"\x00garbage" * 50
    )
    env = {**worker_env, "ASSETS_MAX_ATTEMPTS": "1"}
    worker = start_worker(env=env, threads=2)
    client = Sender(redis_client)
    client.process_asset("locked", "file:locked.pdf")
    client.process_asset("broken", "file:broken.pdf")
    client.process_asset("missing", "file:not-there.pdf")
    client.process_asset("nodns", "https://no-such-host.invalid/a.pdf")
    sender("unexpected", tag="bug")

    def ended() -> bool:
        return all(
            json.loads(run_cli(env, "asset", a, "--json").stdout or "{}").get("status") == "failed"
            for a in ("locked", "broken", "missing", "nodns")
        )

    wait_for(ended, 60, 0.5, "the four assets failed")
    wait_for(
        lambda: any("KeyError" in str(r.get("exc_info", "")) for r in worker.logs()), 30, 0.3, "the crash"
    )
    errors = [r for r in worker.logs() if r.get("level") in ("ERROR", "CRITICAL")]
    assert [r.get("actor") for r in errors] == ["unexpected"], errors  # the bug, and only the bug
    assert all("exc_info" not in r for r in worker.logs() if r.get("actor") == "process_asset")
    codes = {
        a: json.loads(run_cli(env, "asset", a, "--json").stdout)["error_code"]
        for a in ("locked", "broken", "missing", "nodns")
    }
    assert codes == {
        "locked": "encrypted",
        "broken": "corrupt",
        "missing": "fetch_failed",
        "nodns": "fetch_failed",
    }
