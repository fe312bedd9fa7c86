"""The text of a PDF, read in a process of its own: python pdftext.py MAX_PAGES MAX_CHARS < file.pdf

pypdf is pure Python, and a crafted file (a thousand pages sharing one content stream of a million
operators, a stream that inflates to gigabytes) keeps it busy for minutes or grows it without end. In
the web process that would hold a thread (Django's one sync thread, for a sync view) and its memory;
here it is one process the web process kills at its deadline, held to a memory limit. Prints one JSON
object: {"texts": [one per page read], "pages": N} or {"error": "encrypted" | "too_many_pages" |
"unreadable", ...}. Imports nothing of Django or of glmadmin.
"""

import io
import json
import resource
import sys

from pypdf import PdfReader
from pypdf.errors import PyPdfError

MEMORY_BYTES = 1024 ** 3  # address space: pypdf and its interpreter need a small part of it


def main(argv: list[str]) -> None:
    max_pages, max_chars = int(argv[1]), int(argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    sys.stdout.write(json.dumps(read(sys.stdin.buffer.read(), max_pages, max_chars)))


def read(data: bytes, max_pages: int, max_chars: int) -> dict:
    """Pages are read until their text is longer than max_chars (the rest would be refused anyway)."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            return {"error": "encrypted"}
        pages = len(reader.pages)
        if pages > max_pages:
            return {"error": "too_many_pages", "pages": pages}
        texts, chars = [], 0
        for page in reader.pages:
            if chars > max_chars:
                break
            texts.append(page.extract_text() or "")
            chars += len(texts[-1].strip())
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, MemoryError,
            RecursionError) as exc:
        # pypdf raises many kinds on damaged files; the user needs one answer: this PDF is unreadable.
        return {"error": "unreadable", "detail": repr(exc)[:300]}
    return {"texts": texts, "pages": pages}


if __name__ == "__main__":
    main(sys.argv)
