"""OCR with Tesseract 5 (Debian's ``tesseract-ocr`` and its ``-rus``/``-eng`` language data).

Runs in the hard-limited extraction child: each page is one ``tesseract`` process (``OMP_THREAD_LIMIT=1``: one
thread, so concurrency stays the assets group's setting), killed after ``page_timeout_s``; the child's memory
cap applies to it too (rlimits are inherited), and the kernel kills it when the child dies (PDEATHSIG).

Orientation: a page read with a low mean word confidence is asked of Tesseract's orientation detection (``osd``,
Debian's ``tesseract-ocr-osd``); turned by the angle it finds and read again, the better of the two readings
(by confidence) is kept.  A page whose confidence stays below LOW_CONFIDENCE is reported, so the record can flag
it instead of passing garbage on silently.

Preprocessing, as OCRmyPDF does where it helps (measured on tests/support/documents.py's pages): grayscale,
a 3x3 median against toner specks, and scans below 300 dpi (small images) upscaled to it; Tesseract's own
binarisation and its tolerance of a degree or two of skew do the rest.  Images are checked for decompression bombs from their
header, before a pixel is decoded (``max_pixels``: ``too_large``).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

from worker_service.errors import PermanentError
from worker_service.runtime.supervision import die_with_parent

TARGET_DPI = 300
#: an image whose shorter side is below this is treated as a low-resolution scan and upscaled
SMALL_SIDE_PX = 1600


#: below this mean word confidence (0-100) a reading is doubted: its orientation is checked, and a page that
#: stays below it is flagged (``ocr_low_confidence_pages``)
LOW_CONFIDENCE = 60.0


@dataclass(frozen=True)
class Reading:
    """One page's OCR: its text, Tesseract's mean word confidence (None: no word found), and the quarter turn
    (degrees, clockwise) applied before the reading that was kept."""

    text: str
    confidence: float | None
    rotated: int = 0

    @property
    def doubtful(self) -> bool:
        return bool(self.text.strip()) and (self.confidence is None or self.confidence < LOW_CONFIDENCE)


class OcrUnavailable(Exception):
    """Tesseract, or one of the languages asked for, is not installed; the reason is the message."""


def unavailable_reason(languages: str) -> str | None:
    """Why OCR cannot run with ``languages`` (``rus+eng``), or None when it can."""
    binary = shutil.which("tesseract")
    if binary is None:
        return "tesseract is not installed (Debian: apt-get install tesseract-ocr tesseract-ocr-rus tesseract-ocr-eng)"
    try:
        listed = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"tesseract does not run: {exc}"
    installed = {line.strip() for line in listed.splitlines()[1:] if line.strip()}
    missing = [lang for lang in languages.split("+") if lang and lang not in installed]
    if missing:
        return (
            f"Tesseract language data missing: {', '.join(missing)} (Debian: apt-get install "
            f"{' '.join('tesseract-ocr-' + m for m in missing)})"
        )
    return None


def prepare(image: Any, dpi: float | None = None) -> Any:
    """Grayscale, despeckled (a 3x3 median: the toner specks of a photocopy read as punctuation otherwise), and
    upscaled to about 300 dpi when the scan is coarser (or small and of unknown resolution)."""
    from PIL import Image, ImageFilter

    gray = image.convert("L").filter(ImageFilter.MedianFilter(3))
    scale = 1.0
    if dpi and dpi < TARGET_DPI * 0.9:
        scale = TARGET_DPI / dpi
    elif not dpi and min(gray.size) < SMALL_SIDE_PX:
        scale = SMALL_SIDE_PX / max(min(gray.size), 1)
    if scale > 1.05:
        gray = gray.resize(
            (round(gray.width * min(scale, 4)), round(gray.height * min(scale, 4))), Image.Resampling.LANCZOS
        )
    return gray


def recognise(image: Any, *, languages: str, page_timeout_s: float, dpi: float | None = None) -> Reading:
    """One page image (PIL) read by Tesseract, turned upright first when its orientation detection says it lies
    on its side or upside down and the upright reading is the more confident; raises OcrUnavailable or
    PermanentError(timeout)."""
    prepared = prepare(image, dpi)
    reading = _read(prepared, languages, page_timeout_s)
    if reading.confidence is not None and reading.confidence >= LOW_CONFIDENCE:
        return reading
    angle = _orientation(prepared, page_timeout_s)
    if not angle:
        return reading
    turned = _read(prepared.rotate(-angle, expand=True), languages, page_timeout_s)  # PIL turns anticlockwise
    if (turned.confidence or 0.0) > (reading.confidence or 0.0):
        return Reading(turned.text, turned.confidence, angle)
    return reading


def _tesseract(
    image: Any, args: list[str], page_timeout_s: float, languages: str
) -> tuple[str, dict[str, str]]:
    """Run Tesseract on ``image`` with ``args`` after the input and output base; (stdout, {extension: file
    text}) of what it wrote."""
    with tempfile.TemporaryDirectory(prefix="ocr-") as tmp:
        source = os.path.join(tmp, "page.png")
        image.save(source, format="PNG", dpi=(TARGET_DPI, TARGET_DPI))
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        child = os.getpid()
        try:
            # SIGKILLed with this child: the hard limit kills the child, and must not leave Tesseract running
            done = subprocess.run(
                ["tesseract", source, os.path.join(tmp, "out"), *args],
                capture_output=True,
                env=env,
                timeout=page_timeout_s,
                preexec_fn=lambda: die_with_parent(signal.SIGKILL, parent_pid=child),
            )
        except FileNotFoundError:
            raise OcrUnavailable(unavailable_reason(languages) or "tesseract is not installed") from None
        except subprocess.TimeoutExpired:
            raise PermanentError(
                f"OCR of one page took more than {page_timeout_s:g} s", error_code="timeout"
            ) from None
        if done.returncode != 0:
            reason = unavailable_reason(languages)
            if reason:
                raise OcrUnavailable(reason)
            raise PermanentError(
                f"tesseract failed: {done.stderr.decode(errors='replace')[-300:]}", error_code="corrupt"
            )
        written = {}
        for name in os.listdir(tmp):
            if name.startswith("out."):
                with open(os.path.join(tmp, name), encoding="utf-8", errors="replace") as fh:
                    written[name.removeprefix("out.")] = fh.read()
    return done.stdout.decode("utf-8", errors="replace"), written


def _read(image: Any, languages: str, page_timeout_s: float) -> Reading:
    """The page's text and mean word confidence, from one Tesseract run writing both (txt and tsv)."""
    _out, written = _tesseract(
        image,
        ["-l", languages, "--psm", "3", "--dpi", str(TARGET_DPI), "txt", "tsv"],
        page_timeout_s,
        languages,
    )
    confidences = []
    for row in csv.DictReader(written.get("tsv", "").splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE):
        try:
            if row.get("level") == "5" and (row.get("text") or "").strip() and float(row["conf"]) >= 0:
                confidences.append(float(row["conf"]))
        except (KeyError, TypeError, ValueError):
            continue
    text = written.get("txt", "").replace("\f", "").strip()
    return Reading(text, sum(confidences) / len(confidences) if confidences else None)


def _orientation(image: Any, page_timeout_s: float) -> int:
    """Clockwise degrees (90, 180, 270) that make the page upright, by Tesseract's orientation detection; 0 when
    it is upright, undecided, or the ``osd`` data is missing."""
    try:
        _out, written = _tesseract(image, ["--psm", "0", "-l", "osd"], page_timeout_s, "osd")
    except (OcrUnavailable, PermanentError):
        return 0  # no osd data, or a page with too little text to tell: read as it is
    found = re.search(r"Rotate:\s*(\d+)", written.get("osd", ""))
    angle = int(found.group(1)) if found else 0
    return angle if angle in (90, 180, 270) else 0


def open_image(path: str, max_pixels: int) -> Any:
    """A PIL image, refused ``too_large`` from its header when it has more than ``max_pixels`` pixels."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own guard, for frames other than the first
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise PermanentError(f"the image is a decompression bomb: {exc}", error_code="too_large") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise PermanentError(f"not a readable image: {exc}", error_code="corrupt") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PermanentError(
            f"the image has {width}x{height} pixels; the limit is {max_pixels}", error_code="too_large"
        )
    return image


def frames(image: Any) -> list[Any]:
    """Every frame of a multi-page TIFF (one page per frame), or the image itself."""
    from PIL import ImageSequence

    count = getattr(image, "n_frames", 1)
    if count == 1:
        return [image]
    return [frame.copy() for frame in ImageSequence.Iterator(image)]
