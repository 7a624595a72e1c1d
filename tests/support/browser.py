"""A real browser for the dashboard's tests: Debian's chromium driven by Playwright (no browser download)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.helpers import ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"


@contextmanager
def browser_page(chromium_path: str, url: str, user: str, password: str, height: int) -> Iterator[Any]:
    """A page of Debian's chromium (headless, through Playwright: no browser download), logged in as ``user``
    at ``url``; the browser is closed however the test ends."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1300, "height": height})
            browser_login(page, url, user, password)
            yield page
        finally:
            browser.close()


def browser_login(page: Any, url: str, user: str, password: str) -> None:
    page.goto(url)  # the login page, which comes back to ``url``
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("#login")
