"""worker_service.web.redirects: a hostile ``next`` never leaves the host; Origin/Referer from elsewhere refused."""

from __future__ import annotations

import pytest

from worker_service.web.redirects import local_path, same_origin

HOSTILE = [
    "/\t/evil.example",
    "/%09/evil.example",
    "\t//evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "\\/evil.example",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "%2F%2Fevil.example",
    "/%252F/evil.example",
    "/%5C/evil.example",
    "https://evil.example",
    "http:evil.example",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    " //evil.example",
    "\x00//evil.example",
    "/\x00/evil.example",
    "data:text/html,x",
    "evil.example",
    "",
    None,
]


@pytest.mark.parametrize("target", HOSTILE)
def test_a_hostile_next_goes_home(target):
    assert local_path(target) == "/"


@pytest.mark.parametrize(
    "target", ["/", "/dead-letters?actor=process_asset&page=2", "/assets/a%20b", "/queues/"]
)
def test_a_local_path_is_kept(target):
    assert local_path(target) == target


def test_origin_and_referer_must_name_this_site_when_sent():
    assert same_origin("http://127.0.0.1:8080", "http://127.0.0.1:8080/")
    assert same_origin("http://127.0.0.1:8080/dead-letters?x=1", "http://127.0.0.1:8080/")
    assert same_origin(None, "http://127.0.0.1:8080/")  # not sent: the CSRF token alone decides
    assert not same_origin("http://evil.example", "http://127.0.0.1:8080/")
    assert not same_origin("https://127.0.0.1:8080", "http://127.0.0.1:8080/")
    assert not same_origin("null", "http://127.0.0.1:8080/")
