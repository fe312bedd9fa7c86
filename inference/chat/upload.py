"""The text of a file a user puts into a conversation: plain text or a PDF's extractable text.

Every refusal is an UploadError whose message names the file and the problem, shown to the user as is.
"""

import io
import logging
from dataclasses import dataclass

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from pypdf import PdfReader
from pypdf.errors import PyPdfError

KINDS = (".txt", ".pdf")
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


def extract(name: str, size: int, data_chunks) -> Extracted:
    """The text of an uploaded file, given its name, size and content (an iterable of bytes)."""
    kind = next((k for k in KINDS if name.lower().endswith(k)), None)
    if kind is None:
        raise UploadError(f"{name}: only .txt and .pdf files can be added to the chat.")
    limit = settings.CHAT_UPLOAD_MAX_BYTES
    if size > limit:
        raise UploadError(f"{name} is {filesizeformat(size)}; files up to {filesizeformat(limit)} can be added.")
    data = b"".join(data_chunks)
    text, pages, read = _pdf_text(name, data) if kind == ".pdf" else (_plain_text(name, data), None, None)
    text = text.strip()
    if not text:
        raise UploadError(f"{name} has no text a model could read." if kind == ".txt" else
                          f"{name} has no extractable text (a scanned PDF holds only images).")
    cap = settings.CHAT_HISTORY_MAX_CHARS
    if len(text) > cap:
        measured = (f"is {len(text):,} characters" if read == pages else
                    f"is over {cap:,} characters in its first {read} of {pages} pages")
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


def _pdf_text(name: str, data: bytes) -> tuple[str, int, int]:
    """(text, pages, pages read): reading stops once the text is longer than the chat can send."""
    if not data.startswith(b"%PDF-"):
        raise UploadError(f"{name} is not a PDF (it does not start with %PDF-).")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UploadError(f"{name} is encrypted; upload a copy without a password.")
        texts, chars, pages = [], 0, len(reader.pages)
        for page in reader.pages:
            # Past the conversation's cap the upload is refused anyway: the remaining pages are not read.
            if chars > settings.CHAT_HISTORY_MAX_CHARS:
                break
            texts.append(page.extract_text() or "")
            chars += len(texts[-1].strip())
    except UploadError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # pypdf raises many kinds on damaged files; the user needs one answer: this PDF is unreadable.
        log.info("unreadable PDF %s: %r", name, exc)
        raise UploadError(f"{name} could not be read as a PDF (the file is damaged or not a PDF).") from None
    return "\n\n".join(t.strip() for t in texts if t.strip()), pages, len(texts)
