"""An anonymous client cannot make the web process spool a huge request body to disk: every Django path
has a body cap, enforced in ASGI before Django reads a byte (real uvicorn, a raw socket as the client).

Django's spool is an unlinked temporary file, so what it holds is seen through the server process's
open descriptors, not by listing the temp directory.
"""

import os
import select
import socket
import tempfile
import time

import httpx
import pytest
from django.conf import settings

from tests.support.processes import uvicorn

pytestmark = pytest.mark.django_db(transaction=True)

PIECE = 256 * 1024


@pytest.fixture
def web(transactional_db, tmp_path):
    with uvicorn(tmp_path / "uvicorn.log") as (base, proc):
        yield base, proc


def spooled_bytes(pid: int) -> int:
    """Bytes in deleted files the process holds open in the temp directory (the server inherits ours)."""
    total, tmp = 0, tempfile.gettempdir().rstrip("/") + "/"
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(tmp) and target.endswith(" (deleted)"):
                total += os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            continue  # closed meanwhile
    return total


def send_until_answered(sock: socket.socket, pieces, most: int) -> int:
    """Sends pieces until the server answers (or closes) or `most` bytes went; returns the bytes sent."""
    sent = 0
    for piece in pieces:
        if sent >= most or select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break  # answered and closed while we were sending
        sent += len(piece)
    return sent


def answer_head(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            if not data:
                break
            head += data
    except TimeoutError:
        pass
    return head


def open_request(base: str, path: str, framing: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                 f"{framing}\r\n\r\n".encode())
    return sock


def forever(piece: bytes):
    while True:
        yield piece


def test_a_2_gib_declared_body_is_answered_413_at_once_and_never_spooled(web):
    base, proc = web
    started = time.monotonic()
    with open_request(base, "/login/", f"Content-Length: {2 * 1024 ** 3}") as sock:
        # Past Django's 2.5 MB in memory: without the cap, this much is in a temp file by now.
        send_until_answered(sock, forever(b"x" * PIECE), most=8 * 1024 * 1024)
        head = answer_head(sock, timeout=5)
        took = time.monotonic() - started
        spooled = spooled_bytes(proc.pid)
    assert head.startswith(b"HTTP/1.1 413"), head
    # "At once" is the 8 MiB above (answered long before 2 GiB); the time is only a loose bound on a loaded machine.
    assert took < 10, f"answered after {took:.2f} s"
    assert spooled == 0


def test_a_streamed_body_is_cut_off_as_soon_as_it_passes_the_cap(web):
    base, proc = web
    chunk = f"{PIECE:x}\r\n".encode() + b"x" * PIECE + b"\r\n"
    with open_request(base, "/login/", "Transfer-Encoding: chunked") as sock:
        sent = send_until_answered(sock, forever(chunk), most=64 * 1024 * 1024)
        head = answer_head(sock, timeout=5)
        spooled = spooled_bytes(proc.pid)
    assert head.startswith(b"HTTP/1.1 413"), head
    # Answered once past the cap; what was still on its way in socket buffers is all that went beyond it.
    assert sent < settings.WEB_MAX_BODY_BYTES + 16 * 1024 * 1024
    assert spooled == 0


def test_uploads_have_their_own_cap(web):
    base, _ = web
    # Over the pages' cap, within the uploads' cap: Django reads it and answers (CSRF refuses it).
    upload = httpx.post(f"{base}/chat/upload/", content=b"x" * (2 * settings.WEB_MAX_BODY_BYTES), timeout=30)
    assert upload.status_code == 403 and b"CSRF" in upload.content
    with open_request(base, "/chat/upload/", f"Content-Length: {settings.CHAT_UPLOAD_MAX_BYTES * 2}") as sock:
        assert answer_head(sock, timeout=5).startswith(b"HTTP/1.1 413")
    login = httpx.post(f"{base}/login/", content=b"x" * (2 * settings.WEB_MAX_BODY_BYTES), timeout=30)
    assert login.status_code == 413 and "bytes allowed here" in login.json()["error"]
