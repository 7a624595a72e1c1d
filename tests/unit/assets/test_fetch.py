"""worker_service.assets.fetch: path traversal and symlinks refused, SSRF guard, redirects checked hop by hop,
bytes capped."""

from __future__ import annotations

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
    values = {"storage_root": root, "max_bytes": 1000, "connect_timeout": 2, "read_timeout": 2, "allow_http": False,
              "allowlist": ()}
    values.update(overrides)
    return FetchPolicy(**values)


@pytest.mark.parametrize("url", ["https://127.0.0.1/x", "https://localhost/x", "https://169.254.169.254/latest/",
                                 "https://10.1.2.3/x", "https://192.168.1.1/x", "https://[::1]/x",
                                 "https://[::ffff:127.0.0.1]/x", "https://0.0.0.0/x"])
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
