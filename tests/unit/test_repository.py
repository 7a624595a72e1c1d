"""The dashboard over real HTTP (waitress), and in headless Chromium (Playwright driving Debian's chromium)."""

from __future__ import annotations

from pathlib import Path

from tests.support.helpers import ROOT


def test_artifacts_are_git_ignored():
    assert "tests/artifacts/" in Path(ROOT / ".gitignore").read_text()
