"""Senders for other services: the Node.js example against real Redis, processed by a real worker."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.helpers import ROOT, run_cli, unavailable, wait_for

EXAMPLE = ROOT / "examples" / "node"


@pytest.fixture(scope="module")
def node_example() -> Path:
    if not shutil.which("node") or not shutil.which("npm"):
        unavailable("node/npm not installed")
    if not (EXAMPLE / "node_modules" / "redis").exists():
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=EXAMPLE,
                                capture_output=True, text=True, timeout=240)
        if result.returncode != 0:
            unavailable(f"npm ci failed (registry unreachable?): {result.stderr[-300:]}")
    return EXAMPLE


def test_node_example_message_is_processed_by_the_worker(node_example, worker_env, start_worker):
    storage = Path(worker_env["STORAGE_ROOT"])
    (storage / "from-node.txt").write_text("sent from Node.js")
    start_worker()
    payload = json.dumps({"asset_id": "node-1", "source": "file:from-node.txt", "filename": "from-node.txt"})
    result = subprocess.run(["node", "send.mjs", "process_asset", payload], cwd=node_example, capture_output=True,
                            text=True, env={**worker_env, "BROKER_URL": worker_env["BROKER_URL"]}, timeout=60)
    assert result.returncode == 0, result.stderr
    message_id = result.stdout.strip()
    assert len(message_id) == 36

    def record() -> dict:
        out = run_cli(worker_env, "asset", "node-1", "--json")
        return json.loads(out.stdout) if out.returncode == 0 else {}

    asset = wait_for(lambda: record().get("status") == "extracted" and record(), 30, 0.3, "the asset")
    assert asset["chars"] == len("sent from Node.js") and asset["detected_type"] == "text"
