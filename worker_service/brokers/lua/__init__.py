"""The Redis scripts of the brokers and of fleet coordination, one file each."""

from __future__ import annotations

from pathlib import Path

SCRIPTS = {path.stem: path.read_bytes() for path in Path(__file__).parent.glob("*.lua")}
