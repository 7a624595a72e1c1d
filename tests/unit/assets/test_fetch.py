"""worker_service.assets.fetch: path traversal and symlinks refused, SSRF guard, redirects checked hop by hop,
bytes capped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.httpserver import QuietHandler, serve, stop
from worker_service.assets.fetch import FetchPolicy, ForbiddenSource, check_url, fetched, resolve_file
from worker_service.errors import PermanentError


def test_path_traversal_and_symlink_escape_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    (root / "ok.txt").write_text("ok")
    assert resolve_file("ok.txt", str(root)) == (root / "ok.txt").resolve()
    for bad in ("../secret.txt", "/etc/passwd", "link.txt", "a/../../secret.txt"):
        with pytest.raises(ForbiddenSource):
            resolve_file(bad, str(root))


def _policy(root: str, **overrides) -> FetchPolicy:
    values = {
        "storage_root": root,
        "max_bytes": 1000,
        "connect_timeout": 2,
        "read_timeout": 2,
        "allow_http": False,
        "allowlist": (),
    }
    values.update(overrides)
    return FetchPolicy(**values)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://localhost/x",
        "https://169.254.169.254/latest/",
        "https://10.1.2.3/x",
        "https://192.168.1.1/x",
        "https://[::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://0.0.0.0/x",
        "https://[fec0::1]/x",
        "https://[feff:ffff::1]/x",
    ],
)  # site-local (second probe)
def test_ssrf_guard_refuses_internal_addresses(url, tmp_path):
    with pytest.raises(ForbiddenSource):
        check_url(url, _policy(str(tmp_path)))


def test_plain_http_needs_a_setting(tmp_path):
    with pytest.raises(ForbiddenSource, match="http"):
        check_url("http://example.com/x", _policy(str(tmp_path)))


class _Handler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/file")
            self.end_headers()
        elif self.path == "/big":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x" * 5000)
        elif self.path == "/gone":
            self.send_response(404)
            self.end_headers()
        elif self.path == "/drip":  # one byte at a time: no read ever waits long enough to time out
            self.send_response(200)
            self.send_header("Content-Length", "400")
            self.end_headers()
            for _ in range(400):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.05)
        elif self.path == "/down":
            self.send_response(503)
            self.end_headers()
        else:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")


@pytest.fixture()
def local_http():
    server = serve(_Handler)
    yield f"http://localhost:{server.server_port}"
    stop(server)


def test_fetch_checks_every_redirect_hop_and_caps_bytes(local_http, tmp_path):
    from worker_service.errors import TransientError

    allowed = _policy(str(tmp_path), allow_http=True, allowlist=("localhost",))
    with fetched(f"{local_http}/file", allowed) as path:
        assert Path(path).read_bytes() == b"hello"
    # the first hop (localhost) is allowlisted, the redirect target 127.0.0.1 is not
    with pytest.raises(ForbiddenSource), fetched(f"{local_http}/redirect", allowed):
        pass
    with pytest.raises(PermanentError) as info, fetched(f"{local_http}/big", allowed):
        pass
    assert info.value.error_code == "too_large"
    with pytest.raises(PermanentError) as info, fetched(f"{local_http}/gone", allowed):
        pass
    assert info.value.error_code == "fetch_failed"
    with pytest.raises(TransientError), fetched(f"{local_http}/down", allowed):
        pass
    assert list((tmp_path / ".tmp").iterdir()) == []  # temporary copies are removed


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",  # IPv4-mapped
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::1",  # 6to4 of 127.0.0.1 and 169.254.169.254
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a9fe:a9fe",  # NAT64 (well-known and local-use prefixes)
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1 (obfuscated 0x80fffffe)
        "2001:0:a9fe:a9fe:8000:63bf:3fff:fdd2",  # Teredo whose server is 169.254.169.254
    ],
)
def test_ipv6_forms_of_forbidden_ipv4_addresses_are_refused(address, tmp_path):
    """Regression (the attacker's probe): [2002:a9fe:a9fe::1], the 6to4 form of 169.254.169.254, passed."""
    with pytest.raises(ForbiddenSource):
        check_url(f"https://[{address}]/x", _policy(str(tmp_path)))


class _Rebinding:
    """A resolver that answers a public address first and loopback afterwards (DNS rebinding)."""

    def __init__(self, port: int) -> None:
        self.port, self.answers = port, 0

    def __call__(self, host, port, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        import socket

        self.answers += 1
        address = "93.184.216.34" if self.answers == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


def test_a_resolver_that_rebinds_to_loopback_gets_nothing_fetched_from_loopback(
    local_http, tmp_path, monkeypatch
):
    """The host is resolved once and the connection goes to the address that was checked: the loopback
    server behind the second answer is never asked (and no packet leaves the machine: the connection to the
    public address is intercepted before it is made)."""
    import socket

    import urllib3.util.connection

    from worker_service.errors import TransientError

    hits: list[str] = []

    class Recording(_Handler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            super().do_GET()

    server = serve(Recording)
    port = server.server_port
    resolver = _Rebinding(port)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    attempted: list[tuple[str, int]] = []

    def create_connection(address, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        attempted.append(address)
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError("intercepted: tests send nothing off this machine")
        return real_create_connection(address, *args, **kwargs)

    real_create_connection = urllib3.util.connection.create_connection
    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    try:
        with (
            pytest.raises(TransientError),
            fetched(f"http://rebind.example:{port}/file", _policy(str(tmp_path), allow_http=True)),
        ):
            pass
    finally:
        stop(server)
    assert attempted == [("93.184.216.34", port)] and hits == []


def test_the_pinned_connection_keeps_the_name_for_host_sni_and_certificate_checks():
    from worker_service.assets.fetch import pinned_request

    target, headers, session = pinned_request("https://files.example:8443/a/b.pdf?x=1", "93.184.216.34")
    assert target == "https://93.184.216.34:8443/a/b.pdf?x=1" and headers == {"Host": "files.example:8443"}
    adapter = session.get_adapter(target)
    assert adapter.poolmanager.connection_pool_kw["server_hostname"] == "files.example"
    assert adapter.poolmanager.connection_pool_kw["assert_hostname"] == "files.example"
    target, headers, _ = pinned_request("https://files.example/x", "2606:2800:220:1::1")
    assert target == "https://[2606:2800:220:1::1]/x" and headers == {"Host": "files.example"}


def test_a_source_that_drips_one_byte_at_a_time_fails_for_good_at_the_total_deadline(local_http, tmp_path):
    """Regression (second probe): each byte came within the read timeout, so the download held its thread for the
    whole time limit (300 s) and was then retried.  400 bytes at 20/s would take 20 s; the deadline is 1 s."""
    policy = _policy(str(tmp_path), allow_http=True, allowlist=("localhost",), read_timeout=5, deadline_s=1.0)
    started = time.monotonic()
    with (
        pytest.raises(PermanentError, match="FETCH_DEADLINE_SECONDS") as info,
        fetched(f"{local_http}/drip", policy),
    ):
        pass
    assert info.value.error_code == "fetch_failed"
    assert time.monotonic() - started < 5
