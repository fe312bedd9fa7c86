"""A crafted PDF costs the web process nothing: it is read in a child process bounded in pages and wall
time, and the view waits for it without holding Django's sync thread (which also serves every page and
websocket snapshot).

The bomb: many pages sharing one content stream of 200,000 empty text operators (a few KB compressed),
each page costing pypdf about two seconds of pure Python and yielding no text.
"""

import threading
import time
import zlib

import httpx
import psutil
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.support.processes import subprocess_env, uvicorn

pytestmark = pytest.mark.django_db(transaction=True)
URL = reverse("chat-upload")
CSRF = "k" * 32  # a CSRF secret of the right form: the cookie and the header agree


def pdf_bomb(pages: int, operators: int = 200_000) -> bytes:
    stream = zlib.compress(b"BT /F1 12 Tf " + b"() Tj " * operators + b" ET", 9)
    kids = " ".join(f"{4 + i} 0 R" for i in range(pages)).encode()
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R " \
           b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (4 + pages)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
               b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
               *[page] * pages, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def readers() -> list[psutil.Process]:
    """PDF reader processes of the web process (the test's own, or its uvicorn child's)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if any(part.endswith("pdftext.py") for part in proc.cmdline()):
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture
def signed_in(django_user_model) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user("reader", password="pw-bomb-12345"))
    return client


def test_a_pdf_bomb_is_given_up_at_its_deadline(signed_in, settings):
    settings.CHAT_UPLOAD_READ_SECONDS = 2
    started = time.monotonic()
    response = signed_in.post(URL, {"file": SimpleUploadedFile("bomb.pdf", pdf_bomb(pages=90))})
    took = time.monotonic() - started
    assert response.status_code == 400
    assert response.json()["error"].startswith("bomb.pdf took more than 2 s to read and was given up")
    # The deadline, plus starting the reader and this busy test machine's slack: not the ~3 minutes in full.
    assert took < 2 + 6, f"answered after {took:.1f} s"
    assert readers() == []  # killed, not left running


def test_a_pdf_of_more_pages_than_the_cap_is_refused(signed_in):
    response = signed_in.post(URL, {"file": SimpleUploadedFile("long.pdf", pdf_bomb(pages=1000, operators=1))})
    assert response.status_code == 400
    assert response.json()["error"] == (f"long.pdf has 1000 pages; at most {settings.CHAT_UPLOAD_MAX_PAGES} pages "
                                        "of a PDF are read. Upload the pages you need.")


def test_reading_a_pdf_leaves_the_pages_served(signed_in, tmp_path):
    env = {**subprocess_env(), "GLMADMIN_CHAT_UPLOAD_READ_SECONDS": "5"}
    cookies = {settings.SESSION_COOKIE_NAME: signed_in.cookies[settings.SESSION_COOKIE_NAME].value,
               settings.CSRF_COOKIE_NAME: CSRF}
    with uvicorn(tmp_path / "uvicorn.log", env=env) as (base, _):
        answers = []
        upload = threading.Thread(target=lambda: answers.append(httpx.post(
            f"{base}{URL}", files={"file": ("bomb.pdf", pdf_bomb(pages=90))}, cookies=cookies,
            headers={"X-CSRFToken": CSRF}, timeout=60)))
        upload.start()
        deadline = time.monotonic() + 60
        while not readers():
            assert time.monotonic() < deadline, "no PDF reader process started"
            time.sleep(0.05)  # the pace of looking for the reader process: there is no event to wait on
        # The PDF is being read: a page (a sync view, on Django's sync thread) is still served, well before the
        # reading's 5 s bound would free a blocked thread (4 s: room for a loaded machine, less than the bound).
        page = httpx.get(f"{base}/login/", timeout=4)
        assert page.status_code == 200
        upload.join(timeout=120)
    assert answers[0].status_code == 400 and "took more than 5 s" in answers[0].json()["error"]
