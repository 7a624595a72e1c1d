"""Assets end to end: the test corpus (tests/corpus), hostile files, encodings, SSRF through real workers."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import statistics
import time
from pathlib import Path

import pytest
from worker_contracts import Sender

from tests.support import adversarial as adv
from tests.support.helpers import ROOT, run_cli, wait_for

# real documents kept in the repository (tests/corpus/README.rst); TEST_CORPUS names another, e.g. ../shared/corpus
CORPUS = Path(os.environ.get("TEST_CORPUS") or ROOT / "tests" / "corpus")


TERMINAL = {"extracted", "failed"}


SPECIFIC_CODES = {
    "unsupported_type",
    "empty",
    "too_large",
    "too_many_pages",
    "encrypted",
    "corrupt",
    "timeout",
    "memory",
    "fetch_failed",
    "forbidden_source",
    "invalid_payload",
}


CYRILLIC = "Критичные проблемы: пять. Серьёзные замечания по обработке документов и статусам заданий."


def _db(env: dict[str, str]) -> sqlite3.Connection:
    return sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///"), timeout=30)


def _assets(env: dict[str, str]) -> dict[str, dict]:
    try:
        with _db(env) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                "select a.*, t.text from asset a left join asset_text t on t.asset_id = a.asset_id"
            )
            return {r["asset_id"]: dict(r) for r in rows}
    except sqlite3.OperationalError:
        return {}


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _worker_pids(master: int) -> list[int]:
    """The dramatiq master and its worker processes (extraction children have their own cap)."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return []
    return [master, *map(int, children)]


@pytest.fixture()
def corpus_storage(worker_env) -> tuple[Path, list[str]]:
    assert (CORPUS / "MANIFEST.tsv").exists(), f"no corpus at {CORPUS}"
    storage = Path(worker_env["STORAGE_ROOT"])
    names = []
    for folder in ("pdf", "docx", "bad", "cyrillic"):
        for path in sorted((CORPUS / folder).iterdir()):
            target = storage / folder / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            names.append(f"{folder}/{path.name}")
    (storage / "cyrillic" / "note-cp1251.txt").write_bytes(CYRILLIC.encode("cp1251"))
    (storage / "cyrillic" / "note-koi8r.txt").write_bytes(CYRILLIC.encode("koi8_r"))
    (storage / "cyrillic" / "note-utf16.txt").write_bytes(CYRILLIC.encode("utf-16"))
    (storage / "cyrillic" / "readme.md").write_text("# Заголовок\n\n" + CYRILLIC, encoding="utf-8")
    names += [
        "cyrillic/note-cp1251.txt",
        "cyrillic/note-koi8r.txt",
        "cyrillic/note-utf16.txt",
        "cyrillic/readme.md",
    ]
    return storage, names


def test_every_corpus_file_ends_terminal_with_trustworthy_text(
    worker_env, start_worker, redis_client, corpus_storage
):
    import docx2txt
    import pypdfium2

    storage, names = corpus_storage
    worker = start_worker(processes=2, threads=4)
    sender = Sender(redis_client)
    ids = {}
    for i, name in enumerate(names):
        ids[f"c{i}"] = name
        sender.process_asset(f"c{i}", f"file:{name}", filename=Path(name).name)
    peak_rss = 0.0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        peak_rss = max([peak_rss, *(_rss_mb(p) for p in _worker_pids(worker.process.pid))])
        rows = _assets(worker_env)
        if len(rows) == len(ids) and all(r["status"] in TERMINAL for r in rows.values()):
            break
        time.sleep(0.5)
    rows = _assets(worker_env)
    unfinished = {ids[k]: r["status"] for k, r in rows.items() if r["status"] not in TERMINAL}
    assert len(rows) == len(ids) and not unfinished, unfinished

    ratios = []
    for asset_id, name in ids.items():
        row = rows[asset_id]
        folder = name.split("/")[0]
        if folder == "bad":
            assert row["status"] == "extracted" or row["error_code"] in SPECIFIC_CODES, (
                name,
                row["error_code"],
            )
            continue
        if row["status"] == "failed":
            assert row["error_code"] == "encrypted", (name, row["error_code"], row["error_message"])
            continue
        path = storage / name
        if name.endswith(".pdf"):
            try:
                pdf = pypdfium2.PdfDocument(str(path))
            except pypdfium2.PdfiumError:
                continue  # read by the pdfminer fallback; no direct pypdfium2 reference
            direct = "".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
        elif name.endswith(".docx"):
            try:
                direct = docx2txt.process(str(path))
            except KeyError:
                continue  # docx2txt cannot read renamed main parts; we follow the relationship
            if not direct.strip():
                continue  # strict OOXML: docx2txt returns nothing to compare with
        else:
            continue
        ours, theirs = len("".join(row["text"].split())), len("".join(direct.split()))
        if theirs >= 100:
            ratios.append(ours / theirs)
    texts = {ids[k]: r["text"] for k, r in rows.items()}
    for name in ("cyrillic/report_ru.pdf", "cyrillic/report_ru.docx"):
        assert "Критичные проблемы" in texts[name], name
    for name in ("cyrillic/note-cp1251.txt", "cyrillic/note-koi8r.txt", "cyrillic/note-utf16.txt"):
        assert texts[name] == CYRILLIC, (name, texts[name][:60])
    by_name = {ids[k]: r for k, r in rows.items()}
    assert by_name["cyrillic/readme.md"]["detected_type"] == "markdown"
    assert by_name["bad/plumber__empty.pdf"]["error_code"] == "empty"
    assert by_name["pdf/pdfminer__pdf-with-jbig2.pdf"]["no_text"] == 1
    median = statistics.median(ratios)
    print(
        f"\ncorpus: {len(ids)} files, {sum(r['status'] == 'extracted' for r in rows.values())} extracted; "
        f"median char-count ratio vs direct pypdfium2/docx2txt over {len(ratios)} files: {median:.3f}; "
        f"peak worker-process RSS {peak_rss:.0f} MB"
    )
    assert 0.95 <= median <= 1.05
    assert peak_rss < 300


def test_adversarial_files_fail_fast_with_the_right_code_and_the_worker_goes_on(
    worker_env, start_worker, redis_client
):
    storage = Path(worker_env["STORAGE_ROOT"])
    made = {
        "docx-bomb.docx": adv.docx_bomb(storage / "docx-bomb.docx", 1100),  # document.xml expands past 1 GB
        "flate-bomb.pdf": adv.flate_bomb_pdf(storage / "flate-bomb.pdf", 700),
        "pages.pdf": adv.many_pages_pdf(storage / "pages.pdf", 50_000),
        "image.pdf": adv.png(storage / "image.pdf"),
        "archive.docx": adv.plain_zip(storage / "archive.docx"),
        "zero.pdf": storage / "zero.pdf",
    }
    made["zero.pdf"].write_bytes(b"")
    # a real document cut in half
    made["truncated.pdf"] = adv.truncated(
        ROOT / "tests" / "corpus" / "pdf" / "pdfminer__naacl06-shinyama.pdf", storage / "truncated.pdf"
    )
    expected = {
        "docx-bomb.docx": "too_large",
        "flate-bomb.pdf": "memory",
        "pages.pdf": "too_many_pages",
        "truncated.pdf": "corrupt",
        "image.pdf": None,
        "archive.docx": "unsupported_type",
        "zero.pdf": "empty",
    }
    env = {**worker_env, "EXTRACT_MEMORY_MB": "400", "EXTRACT_TIMEOUT_SECONDS": "30"}
    start_worker(env=env, threads=2)
    sender = Sender(redis_client)
    started = time.monotonic()
    for name in made:
        sender.process_asset(name, f"file:{name}", filename=name)
    (storage / "fine.txt").write_text("still working")
    sender.process_asset("fine", "file:fine.txt")
    wait_for(
        lambda: (
            len(_assets(env)) == len(made) + 1 and all(r["status"] in TERMINAL for r in _assets(env).values())
        ),
        120,
        0.5,
        "all terminal",
    )
    rows = _assets(env)
    assert {k: rows[k]["error_code"] for k in made} == {k: v for k, v in expected.items() if k in made}
    assert rows["fine"]["status"] == "extracted" and rows["fine"]["text"] == "still working"
    # a PNG named .pdf is told by its content: an image, read by OCR (it was refused before images were)
    assert (rows["image.pdf"]["status"], rows["image.pdf"]["detected_type"]) == ("extracted", "image")
    print(f"\nadversarial set: {len(made)} hostile files refused in {time.monotonic() - started:.1f} s")


def test_same_content_is_a_noop_and_new_content_replaces_atomically(worker_env, start_worker, redis_client):
    storage = Path(worker_env["STORAGE_ROOT"])
    (storage / "doc.txt").write_text("first version")
    start_worker()
    sender = Sender(redis_client)
    sender.process_asset("same", "file:doc.txt")
    wait_for(lambda: _assets(worker_env).get("same", {}).get("status") == "extracted", 30, what="first run")
    first = _assets(worker_env)["same"]
    wait_for(lambda: _assets(worker_env)["same"]["knowledge_status"] == "skipped", 30, what="knowledge step")
    sender.process_asset("same", "file:doc.txt")
    # The second run passes through "processing" (a new updated_at too): wait until it ends.
    wait_for(
        lambda: (
            _assets(worker_env)["same"]["updated_at"] != first["updated_at"]
            and _assets(worker_env)["same"]["status"] in TERMINAL
        ),
        30,
        what="second run",
    )
    second = _assets(worker_env)["same"]
    assert second["status"] == "extracted" and second["sha256"] == first["sha256"]
    assert second["extract_seconds"] == first["extract_seconds"]  # nothing was extracted again
    knowledge_before = (second["knowledge_gen_ts"], second["knowledge_gen_id"])
    (storage / "doc.txt").write_text("second version, longer")
    sender.process_asset("same", "file:doc.txt")
    wait_for(lambda: _assets(worker_env)["same"]["text"] == "second version, longer", 30, what="new content")
    # extract_knowledge runs again for the new content; until the asset's own status is written it waits as
    # `retrying` (not_ready, no attempt spent), then ends `skipped` (no OPENROUTER_API_KEY: no graph invented).
    wait_for(
        lambda: (
            (row := _assets(worker_env)["same"])["knowledge_status"] == "skipped"
            and (row["knowledge_gen_ts"], row["knowledge_gen_id"]) != knowledge_before
        ),
        30,
        what="knowledge step of the new content",
    )
    record = json.loads(run_cli(worker_env, "asset", "same", "--json").stdout)
    pinned = {
        "asset_id",
        "status",
        "error_code",
        "error_message",
        "attempts",
        "pages",
        "chars",
        "size",
        "sha256",
        "detected_type",
        "no_text",
        "knowledge_status",
        "knowledge_error_code",
        "knowledge_error_message",
        "created_at",
        "updated_at",
    }
    assert pinned <= set(record)
    assert record["chars"] == len("second version, longer") and record["no_text"] is False
    assert record["knowledge_status"] == "skipped" and record["updated_at"].endswith("Z")


def test_ssrf_attempt_through_the_worker_fails_forbidden_source(worker_env, start_worker, redis_client):
    start_worker()
    Sender(redis_client).process_asset("ssrf", "https://169.254.169.254/latest/meta-data/")
    Sender(redis_client).process_asset("trav", "file:../../etc/passwd")
    wait_for(
        lambda: (
            {a: r["status"] for a, r in _assets(worker_env).items()} == {"ssrf": "failed", "trav": "failed"}
        ),
        30,
        what="both refused",
    )
    rows = _assets(worker_env)
    assert rows["ssrf"]["error_code"] == rows["trav"]["error_code"] == "forbidden_source"
    assert rows["ssrf"]["attempts"] == 1
