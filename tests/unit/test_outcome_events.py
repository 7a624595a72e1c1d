"""worker_service.outcome_events: the signature is the HMAC of the raw body, and the README's receivers check it."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from tests.support.helpers import unavailable
from worker_service.outcome_events import encode, sign

SECRET = "events-secret"


def test_the_signature_is_the_hmac_of_the_raw_body_a_receiver_can_check():
    body = encode(
        {
            "event_id": "e-1",
            "event": "asset.extracted",
            "asset_id": "a-1",
            "status": "extracted",
            "error_code": None,
            "occurred_at": "2026-12-01T00:00:00Z",
        }
    )
    assert sign(body, SECRET) == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert json.loads(body)["error_code"] is None


def _readme_block(after: str) -> str:
    """The literal block that follows the paragraph line ``after`` in README.rst."""
    from tests.support.helpers import ROOT

    lines = (ROOT / "README.rst").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith(after)) + 1
    block = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip() + "\n"


def test_the_readme_receivers_accept_a_signed_event_and_refuse_a_changed_one(tmp_path):
    import shutil
    import subprocess

    body = encode(
        {
            "event_id": "e-9",
            "event": "asset.failed",
            "asset_id": "a-9",
            "status": "failed",
            "error_code": "corrupt",
            "occurred_at": "2026-12-01T00:00:00Z",
        }
    )
    signature = sign(body, SECRET)
    namespace: dict = {}
    exec(_readme_block("Python (or ``worker_contracts.parse_event``)::"), namespace)  # noqa: S102 - our README
    assert namespace["outcome_event"](body, signature, SECRET)["error_code"] == "corrupt"
    with pytest.raises(PermissionError):
        namespace["outcome_event"](body.replace(b"corrupt", b"ok"), signature, SECRET)
    from worker_contracts import InvalidSignature, parse_event

    assert parse_event(body, signature, SECRET).event == "asset.failed"
    with pytest.raises(InvalidSignature):
        parse_event(body, "sha256=00", SECRET)
    # regression (second probe): a non-ASCII header raised TypeError, so a receiver answered 500, not 401
    for hostile in ("sha256=ä" + signature[8:], "é"):
        with pytest.raises(InvalidSignature):
            parse_event(body, hostile, SECRET)
        with pytest.raises(PermissionError):
            namespace["outcome_event"](body, hostile, SECRET)
    with pytest.raises(InvalidSignature):  # what a framework's surrogateescape'd header decodes to
        parse_event(body, "sha256=\udcff", SECRET)
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed: the README's Node receiver was not run")
    (tmp_path / "receiver.mjs").write_text(_readme_block("of the npm package)::"))
    (tmp_path / "check.mjs").write_text(
        "import { outcomeEvent } from './receiver.mjs';\n"
        "const [body, sig, secret] = process.argv.slice(2);\n"
        "try { console.log(outcomeEvent(Buffer.from(body), sig, secret).asset_id); }"
        " catch (e) { console.log('refused'); }\n"
    )
    ok = subprocess.run(
        [node, "check.mjs", body.decode(), signature, SECRET],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    bad = subprocess.run(
        [node, "check.mjs", body.decode().replace("corrupt", "ok"), signature, SECRET],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert (ok.stdout.strip(), bad.stdout.strip()) == ("a-9", "refused")
