"""worker_service.assets.sniff: every format told by its content, never by its name."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.support import documents as docs
from worker_service.assets.sniff import sniff
from worker_service.errors import PermanentError


def _png(path: Path) -> Path:
    from PIL import Image

    Image.new("L", (20, 20), 255).save(path, format="PNG")
    return path


def _image(path: Path, fmt: str) -> Path:
    from PIL import Image

    Image.new("RGB", (20, 20), "white").save(path, format=fmt)
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (docs.docx_file, "docx"),
        (docs.xlsx_file, "xlsx"),
        (docs.pptx_file, "pptx"),
        (docs.odt_file, "odt"),
        (docs.ods_file, "ods"),
        (docs.odp_file, "odp"),
        (docs.rtf_file, "rtf"),
        (docs.html_file, "html"),
        (docs.csv_file, "csv"),
        (_png, "image"),
        (lambda p: _image(p, "JPEG"), "image"),
        (lambda p: _image(p, "TIFF"), "image"),
        (lambda p: _image(p, "WEBP"), "image"),
        (lambda p: _image(p, "BMP"), "image"),
    ],
)
def test_each_format_is_told_by_its_content_under_a_misleading_name(tmp_path, make, expected):
    path = make(tmp_path / "upload.bin")
    assert sniff(str(path), filename="report.pdf", content_type="application/octet-stream") == expected


def test_xlsx_and_pptx_are_no_longer_taken_for_docx(tmp_path):
    """Regression: both are ZIP packages with [Content_Types].xml and were sniffed as DOCX (no text at all)."""
    assert sniff(str(docs.xlsx_file(tmp_path / "a.docx")), filename="a.docx", content_type=None) == "xlsx"
    assert sniff(str(docs.pptx_file(tmp_path / "b.docx")), filename="b.docx", content_type=None) == "pptx"


def test_a_password_protected_office_file_is_encrypted_and_a_legacy_one_says_its_format(tmp_path):
    from msoffcrypto.format.ooxml import OOXMLFile

    encrypted = io.BytesIO()
    with open(docs.xlsx_file(tmp_path / "plain.xlsx"), "rb") as plain:
        OOXMLFile(plain).encrypt("secret", encrypted)
    (tmp_path / "locked.xlsx").write_bytes(encrypted.getvalue())
    with pytest.raises(PermanentError) as refused:
        sniff(str(tmp_path / "locked.xlsx"), filename="locked.xlsx", content_type=None)
    assert refused.value.error_code == "encrypted"
    # an OLE file without an encrypted package: the name rewritten wherever it appears
    legacy = encrypted.getvalue().replace(
        "EncryptedPackage".encode("utf-16-le"), "WordDocumentXXXX".encode("utf-16-le")
    )
    (tmp_path / "old.doc").write_bytes(legacy)
    with pytest.raises(PermanentError) as refused:
        sniff(str(tmp_path / "old.doc"), filename="old.doc", content_type=None)
    assert refused.value.error_code == "unsupported_type" and "Word 97-2003 .doc" in str(refused.value)


def test_plain_text_stays_text_and_markdown_by_its_name(tmp_path):
    (tmp_path / "note.txt").write_text("Просто текст, без таблиц.\nВторая строка.\n")
    assert sniff(str(tmp_path / "note.txt"), filename=None, content_type=None) == "text"
    assert sniff(str(tmp_path / "note.txt"), filename="note.md", content_type=None) == "markdown"
