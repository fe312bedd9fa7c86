"""Real receivers for the notification tests: an HTTP server and an SMTP server on 127.0.0.1.

Import the fixtures into a test module: `from tests.support.notify import receiver, smtp  # noqa: F401`.
"""

import email
import json
import queue
import threading
from dataclasses import dataclass, field
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from alerts.incidents import drive
from alerts.levels import evaluate
from alerts.models import Incident, Notification, NotificationChannel
from alerts.tasks import deliver_notification
from tests.support.processes import free_port


@dataclass
class Received:
    path: str
    query: dict
    headers: dict
    raw: bytes

    @property
    def body(self) -> dict:
        return json.loads(self.raw)


@dataclass
class Receiver:
    """A webhook receiver: records every request; answers from a script (default 200 {"errcode": 0})."""

    url: str
    requests: list = field(default_factory=list)
    replies: queue.Queue = field(default_factory=queue.Queue)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event | None = None  # when set up by hold(): requests wait for it

    def reply(self, status: int, body: str = '{"errcode": 0, "errmsg": "ok"}', times: int = 1):
        for _ in range(times):
            self.replies.put((status, body))

    def hold(self) -> threading.Event:
        self.release = threading.Event()
        return self.release


def _handler(receiver: Receiver):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            parts = urlsplit(self.path)
            receiver.requests.append(Received(parts.path, parse_qs(parts.query), dict(self.headers), raw))
            receiver.arrived.set()
            if receiver.release is not None:
                receiver.release.wait(30)
            try:
                status, body = receiver.replies.get_nowait()
            except queue.Empty:
                status, body = 200, '{"errcode": 0, "errmsg": "ok"}'
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def receiver():
    box = Receiver(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(box))
    server.daemon_threads = True
    box.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield box
    if box.release is not None:
        box.release.set()
    server.shutdown()
    server.server_close()


class Mailbox:
    """aiosmtpd handler: keeps each message; refuses recipients at refused.example."""

    def __init__(self):
        self.messages = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append((envelope.rcpt_tos, message))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(settings):
    """A real SMTP server in this process; Django's SMTP backend pointed at it."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"  # pytest-django swaps in locmem
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield mailbox
    controller.stop()


def webhook(url: str, *, kind: str = "webhook", name: str | None = None, **fields) -> NotificationChannel:
    """A webhook channel; like mail_channel, it sends each change at once and alone unless the test asks for
    grouping (group_wait_seconds=30, the default of a channel made in the admin)."""
    fields.setdefault("levels", ["yellow", "orange", "red"])
    fields.setdefault("group_wait_seconds", 0)
    return NotificationChannel.objects.create(name=name or kind, kind=kind, url=url, address_policy="private",
                                              **fields)


def mail_channel(recipients: str = "ops@example.com", **fields) -> NotificationChannel:
    fields.setdefault("levels", ["red"])
    fields.setdefault("group_wait_seconds", 0)
    return NotificationChannel.objects.create(name=fields.pop("name", "mail"), kind="email", recipients=recipients,
                                              **fields)


def reading(percent: float, *, path: str = "/data", margin: float = 2.0, host: str | None = None):
    """A disk reading through the real level rule (thresholds 85/92/97, hysteresis) and incident driver,
    on `host` (default: this one, GLMADMIN_HOST_NAME)."""
    thresholds = {"yellow": 85.0, "orange": 92.0, "red": 97.0}
    source = f"disk:{path}"
    current = Incident.objects.open().filter(source=source).first()
    level = evaluate(percent, thresholds, current.level if current else None, margin)
    return drive(source, level, kind="disk", title=f"Disk data ({path})", value=percent,
                 message=f"disk at {percent:.1f} % on {path}", host=host)


def work() -> list[str]:
    """What a worker does with the queue: run the delivery task of every notification that is due now."""
    due = Notification.objects.filter(status="pending", next_attempt_at__lte=timezone.now()).order_by("pk")
    return [deliver_notification.apply(args=[pk]).get() for pk in list(due.values_list("pk", flat=True))]
