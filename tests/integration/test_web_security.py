"""The dashboard under the second attacker's probe (issue 40), over real HTTP against a real ``worker web``:
memory and threads under login floods, connection floods, oversized bodies, cross-site logins, the origin
check behind a TLS proxy, script on /queues/, content spoofing."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.helpers import WEB_PASSWORD as PASSWORD
from tests.support.helpers import answers_ok, post_login, run_cli, wait_for

#: deploy/k8s/dashboard.yaml's memory limit
K8S_LIMIT_BYTES = 256 * 1024 * 1024


def _add_user(env: dict[str, str], name: str, role: str, password: str) -> None:
    added = subprocess.run(
        [str(Path(sys.executable).parent / "worker"), "users", "add", name, "--role", role],
        input=password + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


_ATTACK = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
import requests
base, n = sys.argv[1], int(sys.argv[2])
def wrong(i):
    # each guess from another address (the trusted proxy's X-Forwarded-For): no throttle stops it, only the gate
    headers = {"X-Forwarded-For": "203.0.113.%d" % (i % 250 + 1)}
    with requests.Session() as http:
        form = http.get(base + "/login", headers=headers, timeout=60).text
        token = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        return http.post(base + "/login", data={"user": "olga", "password": "guess-%d" % i, "csrf": token},
                         headers=headers, allow_redirects=False, timeout=60).status_code
with ThreadPoolExecutor(max_workers=n) as pool:
    print(json.dumps(list(pool.map(wrong, range(n)))))
"""


@pytest.mark.alone  # measures response times: with the machine to itself
@pytest.mark.parametrize("parallel", [8, 50])
def test_parallel_wrong_logins_keep_memory_bounded_health_fast_and_another_login_answering(
    start_web, parallel
):
    """Regression (second probe): each Argon2 check (64 MiB) ran in one of 8 request threads: 3 parallel wrong
    logins peaked at 268 MiB, over the 256 MiB limit (OOM-killed), 8 reached 595 MiB and stalled /healthz.
    The attack runs in a process of its own, each guess from another address through the trusted proxy (so only
    the hashing gate can hold it); /healthz is probed one request at a time meanwhile, as a kubelet does."""
    base, env = start_web(WEB_PROXY_ADDRESSES="127.0.0.1")
    _add_user(env, "olga", "operator", "olga-long-password")  # a real 64 MiB Argon2id hash to verify against
    _add_user(env, "ivan", "operator", "ivan-long-password")
    pid = start_web.processes[-1].pid
    attack = subprocess.Popen(
        [sys.executable, "-c", _ATTACK, base, str(parallel)], stdout=subprocess.PIPE, text=True
    )
    health_s: list[float] = []
    during: list[int] = []
    while attack.poll() is None or len(health_s) < 30:
        started = time.monotonic()
        assert requests.get(f"{base}/healthz", timeout=30).status_code == 200
        health_s.append(time.monotonic() - started)
        if (
            len(health_s) % 10 == 5
        ):  # another user logs in meanwhile: answered at once, in or busy, never stalled
            started = time.monotonic()
            during.append(
                post_login(
                    base, "ivan", "ivan-long-password", headers={"X-Forwarded-For": "198.51.100.2"}
                ).status_code
            )
            assert time.monotonic() - started < 1.0
        time.sleep(0.02)
    codes = json.loads(attack.communicate(timeout=120)[0])
    peak = _peak_rss_bytes(pid)
    print(
        f"{parallel} parallel wrong logins: answers {sorted(set(codes))}, dashboard peak RSS {peak / 2**20:.0f} MiB,"
        f" /healthz p99 {sorted(health_s)[int(len(health_s) * 0.99) - 1] * 1000:.0f} ms, other login {during}"
    )
    assert len(codes) == parallel and set(codes) <= {401, 503} and 401 in codes
    assert set(during) <= {303, 503}
    assert peak < 0.85 * K8S_LIMIT_BYTES, f"peak RSS {peak / 2**20:.0f} MiB"  # under the limit with margin
    health_s.sort()
    assert health_s[int(len(health_s) * 0.99) - 1] < 0.1, health_s[-10:]  # p99
    ok = post_login(base, "ivan", "ivan-long-password", headers={"X-Forwarded-For": "198.51.100.2"})
    assert ok.status_code == 303


def test_a_busy_login_answers_503_with_retry_after_at_once_and_is_not_counted_as_a_failure(start_web):
    base, env = start_web(WEB_PROXY_ADDRESSES="127.0.0.1", WEB_LOGIN_CONCURRENCY="1")
    _add_user(env, "olga", "operator", "olga-long-password")
    same = {"X-Forwarded-For": "192.0.2.9"}
    attack = subprocess.Popen([sys.executable, "-c", _ATTACK, base, "8"], stdout=subprocess.PIPE, text=True)
    answers = []
    while attack.poll() is None:
        answer = post_login(base, "olga", "wrong-but-not-counted", headers=same)
        answers.append((answer.status_code, answer.headers.get("Retry-After")))
    attack.communicate(timeout=60)
    assert (503, "1") in answers or len(answers) < 3  # a busy gate says so at once
    # the busy answers were not counted: six wrong guesses from this address would lock it; the right one logs in
    assert post_login(base, "olga", "olga-long-password", headers=same).status_code == 303


def test_wrong_guesses_lock_a_name_out_from_that_address_only(start_web):
    """Regression (second probe): six wrong logins locked any operator out for 15 minutes, from anywhere."""
    base, _ = start_web(WEB_PROXY_ADDRESSES="127.0.0.1")
    attacker, operator = {"X-Forwarded-For": "203.0.113.66"}, {"X-Forwarded-For": "198.51.100.7"}
    codes = [post_login(base, "admin", f"guess-{i}", headers=attacker).status_code for i in range(7)]
    assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
    assert post_login(base, "admin", PASSWORD, headers=attacker).status_code == 429
    assert post_login(base, "admin", PASSWORD, headers=operator).status_code == 303


def test_forwarded_headers_are_believed_from_no_one_by_default(web):
    """Regression (second probe): the default WEB_PROXY_ADDRESSES=127.0.0.1 let any local process choose its
    address for the throttle (and a proxy user header would have logged it in as anyone)."""
    base, _ = web
    codes = [
        post_login(base, "admin", f"guess-{i}", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
        for i in range(7)
    ]
    assert codes[5:] == [429, 429]  # every guess counted against the real peer, whatever the header said
    start = run_cli({**web[1], "WEB_PROXY_USER_HEADER": "X-Forwarded-User", "WEB_PROXY_ADDRESSES": ""}, "web")
    assert start.returncode == 2 and "WEB_PROXY_ADDRESSES" in start.stderr


def test_a_login_posted_from_another_site_or_without_the_forms_token_is_refused(web):
    """Regression (second probe): login accepted cross-site posts (login CSRF)."""
    base, _ = web
    bare = requests.Session()
    assert bare.post(f"{base}/login", data={"user": "admin", "password": PASSWORD}).status_code == 403
    assert bare.get(f"{base}/", allow_redirects=False).status_code == 303  # not logged in
    http = requests.Session()
    token = http.get(f"{base}/login").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    crossed = http.post(
        f"{base}/login",
        data={"user": "admin", "password": PASSWORD, "csrf": token},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert crossed.status_code == 403
    assert post_login(base, "admin", PASSWORD).status_code == 303


def test_behind_a_tls_terminating_proxy_browser_actions_are_accepted_and_other_sites_still_refused(start_web):
    """Regression (second probe): every browser action behind a TLS proxy was refused ("came from another site"):
    Origin https://dash.example was compared with request.host_url, http://127.0.0.1:PORT."""
    base, _ = start_web(WEB_PROXY_ADDRESSES="127.0.0.1")
    proxy = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "dash.example",
        "Origin": "https://dash.example",
    }
    jar: dict[
        str, str
    ] = {}  # the browser's cookies (Secure: requests would not send them to http://127.0.0.1)

    def call(method: str, path: str, **kwargs) -> requests.Response:
        answer = requests.request(method, f"{base}{path}", cookies=jar, allow_redirects=False, **kwargs)
        jar.update(answer.cookies.get_dict())
        return answer

    token = call("GET", "/login", headers=proxy).text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    login = call("POST", "/login", headers=proxy, data={"user": "admin", "password": PASSWORD, "csrf": token})
    assert login.status_code == 303 and "; Secure" in login.headers["Set-Cookie"]
    csrf = call("GET", "/", headers=proxy).text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    paused = call("POST", "/api/queues/assets/pause", headers={**proxy, "X-CSRF-Token": csrf})
    assert paused.status_code == 200, paused.text
    for origin in (
        "http://dash.example",
        "https://evil.example",
    ):  # a downgrade or another site: still refused
        refused = call(
            "POST", "/api/queues/assets/resume", headers={**proxy, "Origin": origin, "X-CSRF-Token": csrf}
        )
        assert refused.status_code == 403
    # the same headers from a peer that is not a trusted proxy change nothing
    untrusted, _ = start_web()
    assert post_login(untrusted, "admin", PASSWORD, headers=proxy).status_code == 403


def _open_idle(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]


def test_idle_and_slow_sockets_leave_health_and_login_answering(start_web):
    """Regression (second probe): 105 idle sockets made everything unreachable, /healthz included (waitress's
    connection_limit 100, channel_timeout 120 s), and one byte every two minutes kept them."""
    base, _ = start_web(WEB_REQUEST_TIMEOUT_SECONDS="3")
    port = int(base.rsplit(":", 1)[1])
    idle = _open_idle(port, 105)
    slow = _open_idle(port, 105)
    try:
        for s in slow:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers that never end
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            for s in slow:
                try:
                    s.sendall(b"X: y\r\n")  # a header line now and then: never idle
                except OSError:
                    pass
            for path in ("/healthz", "/login"):
                started = time.monotonic()
                assert requests.get(f"{base}{path}", timeout=5).status_code == 200
                assert time.monotonic() - started < 1.0, path
            time.sleep(0.5)
        # a request that takes longer than WEB_REQUEST_TIMEOUT_SECONDS to arrive has its connection closed
        closed = 0
        for s in slow:
            s.settimeout(0.05)
            try:
                closed += s.recv(1) == b""
            except (TimeoutError, OSError) as exc:
                closed += not isinstance(exc, TimeoutError)
        assert closed == len(slow)
    finally:
        for s in idle + slow:
            s.close()


def test_a_64_mib_body_is_refused_413_before_2_mib_are_read(web):
    """Regression (second probe): bodies up to 1 GiB were read and spooled to disk before the 1 MB limit answered
    413, without logging in.  The client sends the body in 64 KiB pieces and stops as soon as an answer comes:
    what it could send by then bounds what the server read."""
    base, _ = web
    port = int(base.rsplit(":", 1)[1])
    for framing in (b"Content-Length: 67108864\r\n", b"Transfer-Encoding: chunked\r\n"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            s.sendall(
                b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                + framing
                + b"\r\n"
            )
            sent, piece = 0, b"a" * 65536
            chunked = b"Transfer-Encoding" in framing
            while sent < 64 * 2**20:
                if select.select([s], [], [], 0.01)[0]:
                    break
                try:
                    s.sendall(b"10000\r\n" + piece + b"\r\n" if chunked else piece)
                except OSError:
                    break
                sent += len(piece)
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
        assert sent < 2 * 2**20, f"{sent} bytes sent before the answer ({framing!r})"


def test_queues_pages_never_echo_a_planted_csrf_cookie_and_no_page_has_inline_script(web, sender):
    """Regression (second probe): the mounted dramatiq-dashboard (replaced by our own queue pages since) wrote its
    __dd_csrf cookie's value into the page unescaped, and the CSP allowed inline scripts: a cookie planted by a
    sibling subdomain ran script."""
    base, _ = web
    sender("process_asset", queue="assets", asset_id="queued", source="file:q.pdf")  # a queue page lists it
    http = requests.Session()
    assert post_login(base, "admin", PASSWORD, session=http).status_code == 303
    planted = '"><img src=x onerror=alert(document.domain)>'
    cookie = f"worker_session={http.cookies['worker_session']}; __dd_csrf={planted}"
    page = requests.get(f"{base}/queues/assets", headers={"Cookie": cookie})
    assert page.status_code == 200 and "queued" in page.text
    assert planted not in page.text and "onerror=" not in page.text
    assert "__dd_csrf" not in page.headers.get("Set-Cookie", "")
    policy = page.headers["Content-Security-Policy"]
    assert (
        "script-src 'self'" in policy
        and "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";")[0]
    )
    for path in ("/", "/dead-letters", "/events", "/audit", "/queues/", "/login"):
        body = http.get(f"{base}{path}").text
        assert "<script>" not in body and " onclick=" not in body, (
            path
        )  # only <script src=...> from this site
    assert http.get(f"{base}/static/dashboard.js").status_code == 200


def test_a_flash_message_cannot_be_written_by_a_link(web):
    """Regression (second probe): ``?flash=`` showed any text on every page (content spoofing)."""
    base, _ = web
    http = requests.Session()
    assert post_login(base, "admin", PASSWORD, session=http).status_code == 303
    spoof = "Your session expired: call +1 555 0100 with your password"
    for path in ("/", "/dead-letters", "/events"):
        assert spoof not in http.get(f"{base}{path}", params={"flash": spoof}).text
    csrf = http.get(f"{base}/").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    done = http.post(f"{base}/overview/queues/assets/pause", data={"csrf": csrf})
    assert (
        done.status_code == 200 and "Queue assets: paused." in done.text
    )  # the server's own message still shows
    assert "Queue assets: paused." not in http.get(f"{base}/").text  # once


def test_the_worker_probe_port_binds_its_setting_and_survives_idle_sockets(worker_env, start_worker):
    """Regression (second probe): the probe server bound 0.0.0.0 always and started a thread per connection that
    never timed out."""
    from tests.support.helpers import free_port

    port = free_port()
    start_worker(env={**worker_env, "METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1"})
    wait_for(lambda: answers_ok(f"http://127.0.0.1:{port}/metrics"), 60, 0.3, "probe port up")
    listening = Path("/proc/net/tcp").read_text()
    assert f"0100007F:{port:04X}" in listening and f"00000000:{port:04X}" not in listening  # loopback only
    idle = _open_idle(port, 60)  # more than it serves at once
    try:
        started = time.monotonic()
        wait_for(
            lambda: answers_ok(f"http://127.0.0.1:{port}/metrics"),
            15,
            0.2,
            "probe answers despite idle sockets",
        )
        assert time.monotonic() - started < 10  # the idle ones were dropped within their time-out
    finally:
        for s in idle:
            s.close()


def test_other_out_of_range_numbers_answer_4xx_never_500(web):
    """Regression (second probe): ids past BIGINT in a path or a form, and dates at the calendar's end, answered
    500 (the database's integer overflow; 9999-12-31 plus a day)."""
    base, _ = web
    http = requests.Session()
    assert post_login(base, "admin", PASSWORD, session=http).status_code == 303
    csrf = http.get(f"{base}/").text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    huge = "9" * 30
    for path in (
        f"/dead-letters/{huge}",
        f"/api/dead-letters/{huge}",
        "/dead-letters/9223372036854775808",
        "/dead-letters?until=9999-12-31&since=0001-01-01",
        "/api/dead-letters?until=9999-12-31",
    ):
        assert http.get(f"{base}{path}").status_code in (200, 400, 404), path
    for path in (f"/dead-letters/{huge}/requeue", f"/events/{huge}/resend", f"/api/events/{huge}/resend"):
        assert (
            http.post(f"{base}{path}", data={"csrf": csrf}, headers={"X-CSRF-Token": csrf}).status_code == 404
        )
    bulk = http.post(f"{base}/dead-letters/bulk", data={"csrf": csrf, "action": "delete", "ids": [huge, "²"]})
    assert bulk.status_code == 200 and "Nothing selected." in bulk.text
