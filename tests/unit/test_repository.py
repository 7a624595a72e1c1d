"""The repository itself: what tests write (screenshots) is git-ignored."""

from __future__ import annotations

from pathlib import Path

from tests.support.helpers import ROOT


def test_artifacts_are_git_ignored():
    assert "tests/artifacts/" in Path(ROOT / ".gitignore").read_text()
