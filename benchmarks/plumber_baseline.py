"""pdfplumber's extract_text with page.close(): the baseline the extraction benchmark compares against.

Usage: python -m benchmarks.plumber_baseline FILE...  -> prints JSON {pages, seconds, peak_rss_mb}
"""

import json
import resource
import sys
import time

import pdfplumber


def main(paths: list[str]) -> None:
    pages = 0
    started = time.monotonic()
    for path in paths:
        try:
            with pdfplumber.open(path) as pdf:
                for page in pdf.pages:
                    page.extract_text()
                    page.close()
                    pages += 1
        except Exception:  # noqa: BLE001 - damaged or encrypted files count as zero pages, as for us
            continue
    sys.stdout.write(
        json.dumps(
            {
                "pages": pages,
                "seconds": time.monotonic() - started,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
