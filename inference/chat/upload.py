"""The text of a file a user puts into a conversation: plain text or a PDF's extractable text.

Every refusal is an UploadError whose message names the file and the problem, shown to the user as is.
A PDF is read in a child process (pdftext.py) bounded in pages, memory and wall time, so a crafted file
costs at most that, and neither the event loop nor Django's one sync thread waits on it.
"""

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.template.defaultfilters import filesizeformat

KINDS = (".txt", ".pdf")
PDF_READER = Path(__file__).with_name("pdftext.py")
log = logging.getLogger(__name__)


class UploadError(ValueError):
    pass


@dataclass(frozen=True)
class Extracted:
    name: str
    text: str
    pages: int | None = None  # for a PDF

    def as_dict(self) -> dict:
        return {"name": self.name, "text": self.text, "chars": len(self.text), "pages": self.pages}


async def extract(name: str, size: int, read: Callable[[], bytes]) -> Extracted:
    """The text of an uploaded file, given its name, size and a function that reads its content."""
    kind = next((k for k in KINDS if name.lower().endswith(k)), None)
    if kind is None:
        raise UploadError(f"{name}: only .txt and .pdf files can be added to the chat.")
    limit = settings.CHAT_UPLOAD_MAX_BYTES
    if size > limit:
        raise UploadError(f"{name} is {filesizeformat(size)}; files up to {filesizeformat(limit)} can be added.")
    data = await asyncio.to_thread(read)  # a file read: not in the event loop
    text, pages, pages_read = (await _pdf_text(name, data) if kind == ".pdf" else
                               (_plain_text(name, data), None, None))
    text = text.strip()
    if not text:
        raise UploadError(f"{name} has no text a model could read." if kind == ".txt" else
                          f"{name} has no extractable text (a scanned PDF holds only images).")
    cap = settings.CHAT_HISTORY_MAX_CHARS
    if len(text) > cap:
        measured = (f"is {len(text):,} characters" if pages_read == pages else
                    f"is over {cap:,} characters in its first {pages_read} of {pages} pages")
        raise UploadError(f"The text of {name} {measured}; the chat sends the model at most {cap:,} characters "
                          "of conversation.")
    return Extracted(name, text, pages)


def _plain_text(name: str, data: bytes) -> str:
    if b"\x00" in data:
        raise UploadError(f"{name} is not a text file (it holds binary data).")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError(f"{name} is not UTF-8 text (bad byte at position {exc.start}).") from None


async def _pdf_text(name: str, data: bytes) -> tuple[str, int, int]:
    """(text, pages, pages read): reading stops once the text is longer than the chat can send."""
    if not data.startswith(b"%PDF-"):
        raise UploadError(f"{name} is not a PDF (it does not start with %PDF-).")
    answer = await _read_pdf(name, data)
    if answer.get("error") == "encrypted":
        raise UploadError(f"{name} is encrypted; upload a copy without a password.")
    if answer.get("error") == "too_many_pages":
        raise UploadError(f"{name} has {answer['pages']} pages; at most {settings.CHAT_UPLOAD_MAX_PAGES} pages of "
                          "a PDF are read. Upload the pages you need.")
    if "texts" not in answer:
        log.info("unreadable PDF %s: %s", name, answer.get("detail") or answer)
        raise UploadError(f"{name} could not be read as a PDF (the file is damaged or not a PDF).")
    texts = answer["texts"]
    return "\n\n".join(t.strip() for t in texts if t.strip()), answer["pages"], len(texts)


async def _read_pdf(name: str, data: bytes) -> dict:
    """pdftext.py's answer, or UploadError once it runs past CHAT_UPLOAD_READ_SECONDS (it is then killed)."""
    seconds = settings.CHAT_UPLOAD_READ_SECONDS
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(PDF_READER), str(settings.CHAT_UPLOAD_MAX_PAGES), str(settings.CHAT_HISTORY_MAX_CHARS),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={"PATH": os.defpath})  # none of the web process's secrets in a process that parses untrusted files
    try:
        out, _ = await asyncio.wait_for(child.communicate(data), seconds)
    except TimeoutError:
        raise UploadError(f"{name} took more than {seconds} s to read and was given up; upload a shorter part of "
                          "it, or its text as a .txt file.") from None
    finally:
        if child.returncode is None:  # past the deadline, or the request was cancelled (the client left)
            child.kill()
            await child.wait()
    try:
        return json.loads(out)
    except ValueError:  # killed by its memory limit, or crashed
        return {"error": "unreadable", "detail": f"exit status {child.returncode}"}
