"""Files put into a chat conversation: their text as JSON, or a 400 that says what is wrong."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from pypdf import PdfWriter

URL = reverse("chat-upload")


def pdf_with_text(*lines: str, pages: int = 1) -> bytes:
    """A PDF written by hand (each page the same lines): Helvetica text, a real xref table with byte offsets."""
    ops = " ".join(f"({line}) Tj 0 -16 Td" for line in lines)
    stream = f"BT /F1 12 Tf 72 720 Td {ops} ET".encode()
    kids = " ".join(f"{5 + i} 0 R" for i in range(pages)).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ] + [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
         b"/Resources << /Font << /F1 4 0 R >> >> >>"] * pages
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def blank_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


@pytest.fixture
def client(django_user_model):
    user = django_user_model.objects.create_user("chatter", password="pw-upload-1234")
    client = Client()
    client.force_login(user)
    return client


def upload(client, name: str, content: bytes):
    return client.post(URL, {"file": SimpleUploadedFile(name, content)})


def test_text_file_comes_back_as_text(client):
    response = upload(client, "notes.txt", "Disk at 97 % on gpu-box-2 — résumé\n".encode())
    assert response.status_code == 200
    assert response.json() == {"name": "notes.txt", "text": "Disk at 97 % on gpu-box-2 — résumé", "chars": 34,
                               "pages": None}


def test_pdf_text_is_extracted(client):
    response = upload(client, "Report.PDF", pdf_with_text("Engine restarted at 03:00", "KV cache at 91 percent"))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["pages"] == 1
    assert "Engine restarted at 03:00" in body["text"] and "KV cache at 91 percent" in body["text"]


def test_pdf_without_text_says_so(client):
    response = upload(client, "scan.pdf", blank_pdf())
    assert response.status_code == 400
    assert response.json()["error"] == "scan.pdf has no extractable text (a scanned PDF holds only images)."


def test_damaged_pdf_is_refused_clearly(client):
    response = upload(client, "broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> garbage")
    assert response.status_code == 400
    assert response.json()["error"] == "broken.pdf could not be read as a PDF (the file is damaged or not a PDF)."


def test_pdf_name_on_other_content_is_refused(client):
    response = upload(client, "fake.pdf", b"just text pretending")
    assert response.status_code == 400
    assert response.json()["error"] == "fake.pdf is not a PDF (it does not start with %PDF-)."


@pytest.mark.parametrize("name", ["photo.png", "slides.docx", "noextension"])
def test_wrong_type_is_refused(client, name):
    response = upload(client, name, b"\x89PNG\r\n")
    assert response.status_code == 400
    assert response.json()["error"] == f"{name}: only .txt and .pdf files can be added to the chat."


def test_binary_or_non_utf8_text_is_refused(client):
    binary = upload(client, "dump.txt", b"ab\x00cd")
    assert binary.json()["error"] == "dump.txt is not a text file (it holds binary data)."
    response = upload(client, "latin.txt", "café".encode("latin-1"))
    assert response.status_code == 400
    assert response.json()["error"] == "latin.txt is not UTF-8 text (bad byte at position 3)."


def test_too_large_file_is_refused_with_the_limit(client, settings):
    settings.CHAT_UPLOAD_MAX_BYTES = 1000
    response = upload(client, "big.txt", b"x" * 1001)
    assert response.status_code == 400
    assert response.json()["error"] == "big.txt is 1001\xa0bytes; files up to 1000\xa0bytes can be added."
    # Far over the limit: refused on the declared length, before the body is parsed.
    response = upload(client, "huge.txt", b"x" * 200_000)
    assert response.status_code == 400
    assert response.json()["error"].startswith("The upload is 195.")
    assert response.json()["error"].endswith("files up to 1000\xa0bytes can be added.")
    assert upload(client, "fits.txt", b"x" * 1000).status_code == 200


def test_text_longer_than_the_conversation_cap_is_refused(client, settings):
    settings.CHAT_HISTORY_MAX_CHARS = 500
    response = upload(client, "long.txt", b"y" * 501)
    assert response.status_code == 400
    assert response.json()["error"] == ("The text of long.txt is 501 characters; the chat sends the model at most "
                                        "500 characters of conversation.")


def test_a_long_pdf_is_read_only_until_it_is_too_long(client, settings):
    settings.CHAT_HISTORY_MAX_CHARS = 500
    line = "Engine gw-0 restarted after the KV cache filled up; " * 2  # about 100 characters a page
    response = upload(client, "manual.pdf", pdf_with_text(line, pages=40))
    assert response.status_code == 400
    # Five pages are past the cap: the other 35 are never extracted.
    assert response.json()["error"] == ("The text of manual.pdf is over 500 characters in its first 5 of 40 pages; "
                                        "the chat sends the model at most 500 characters of conversation.")
    fits = upload(client, "short.pdf", pdf_with_text(line, pages=4))
    assert fits.status_code == 200 and fits.json()["pages"] == 4 and fits.json()["chars"] > 300


def test_empty_and_missing_files(client):
    assert upload(client, "empty.txt", b"  \n").json()["error"] == "empty.txt has no text a model could read."
    response = client.post(URL, {})
    assert response.status_code == 400
    assert response.json()["error"] == "No file was sent (the form field is named file)."


def test_login_and_csrf_are_required(django_user_model):
    anonymous = Client()
    response = anonymous.post(URL, {"file": SimpleUploadedFile("a.txt", b"hi")})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))

    user = django_user_model.objects.create_user("csrf", password="pw-upload-1234")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(URL, {"file": SimpleUploadedFile("a.txt", b"hi")}).status_code == 403
    assert strict.get(URL).status_code == 405
