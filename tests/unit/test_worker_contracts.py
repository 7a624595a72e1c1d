"""worker_contracts stays light: importing it pulls in no PDF library, peewee or Dramatiq."""

from __future__ import annotations

import subprocess
import sys


def test_importing_contracts_pulls_in_no_pdf_library_no_peewee_no_dramatiq():
    code = (
        "import sys, worker_contracts; heavy = {'pypdfium2', 'pdfplumber', 'pdfminer', 'docx2txt', 'peewee', "
        "'dramatiq', 'psycopg2'}; print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
