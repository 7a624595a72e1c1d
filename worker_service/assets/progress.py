"""How far a long extraction has got, for the asset page ("OCR: page 3 of 20").

The hard-limited child writes ``done total`` to a small file after each page it OCRs
(worker_service.assets.extraction, which imports nothing of the database); a thread
of the worker process reads it every :data:`EVERY_S` and writes it to the record's ``progress`` while the record
is ``processing`` in this generation (:class:`ProgressWatch`).  The child never touches the database.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import TracebackType

from worker_service.database import session
from worker_service.database.models import Asset
from worker_service.database.tracks import Generation

logger = logging.getLogger(__name__)
EVERY_S = 2.0


class ProgressWatch:
    """Copies the child's progress file to the record while the extraction runs; clears it at the end.

    Parameters: asset_id, generation, path (the file the child writes), every_s."""

    def __init__(self, asset_id: str, generation: Generation, path: Path, every_s: float = EVERY_S) -> None:
        self.asset_id, self.generation, self.path, self.every_s = asset_id, generation, path, every_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"progress-{asset_id}"[:40], daemon=True)
        self.last = ""

    def __enter__(self) -> ProgressWatch:
        self.thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop.set()
        self.thread.join(5)
        self._write(None)
        for leftover in (self.path, Path(f"{self.path}.part")):
            leftover.unlink(missing_ok=True)

    def _loop(self) -> None:
        while not self.stop.wait(self.every_s):
            self.copy_once()

    def copy_once(self) -> None:
        """Read the child's file and, when it moved on, write the line to the record (one round of the thread)."""
        try:
            done, total = self.path.read_text().split()
            line = f"OCR: page {int(done)} of {int(total)}"
        except (OSError, ValueError):
            return
        if line != self.last:
            self.last = line
            self._write(line)

    def _write(self, line: str | None) -> None:
        try:
            with session():
                (
                    Asset.update(progress=line)
                    .where(
                        Asset.asset_id == self.asset_id,
                        Asset.gen_ts == self.generation[0],
                        Asset.gen_id == self.generation[1],
                    )
                    .execute()
                )
        except Exception as exc:  # noqa: BLE001 - progress is a courtesy: the extraction goes on without it
            logger.debug("Could not record the progress of %s: %s", self.asset_id, exc)
