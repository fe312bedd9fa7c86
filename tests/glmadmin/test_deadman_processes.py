"""Stop the worker and beat: every open page says "monitoring stalled" and one notification goes out, from
a web process; start them again: the banner clears and the resolution goes out.

Real processes on the test's database and Redis: two web servers (uvicorn, as two web processes or hosts
would run), the Procfile's alerts worker and beat, checks every 2 s, a stall after 4 of them; a real
webhook receiver is the channel. No notify worker runs, so whatever reaches the receiver was sent by a web
process.
"""

import contextlib
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from django.conf import settings
from django.test import Client
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from websockets.sync.client import connect

from alerts.models import Incident
from glmadmin.lib import redis as rd
from monitoring import deadman
from tests.glmadmin.test_lanes import procfile
from tests.support import notify as notify_support
from tests.support.notify import webhook
from tests.support.processes import process_group, subprocess_env, uvicorn, wait_for

receiver = notify_support.receiver  # a real webhook receiver, as a fixture of this module

pytestmark = pytest.mark.django_db(transaction=True)

CHECK_EVERY, STALLED_AFTER_CHECKS = 2, 4


@pytest.fixture
def checks_every_2_seconds(no_default_filesystems):
    every, _ = IntervalSchedule.objects.get_or_create(every=CHECK_EVERY, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update(enabled=False)  # beat sends only the disk check here
    PeriodicTask.objects.update_or_create(name="Check disk usage", defaults={
        "task": deadman.CHECK_TASK, "interval": every, "enabled": True, "expire_seconds": 9})


def session_cookie(django_user_model) -> str:
    client = Client()
    client.force_login(django_user_model.objects.create_user("viewer", password="pw-12345678"))
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def live_socket(base: str, cookie: str):
    host = base.removeprefix("http://")
    return connect(f"ws://{host}/ws/live/", origin=f"http://{host}", additional_headers={"Cookie": cookie})


class Page:
    """An open page's live socket: the latest state it was sent."""

    def __init__(self, socket):
        self.socket = socket
        self.latest = None

    def shows(self, predicate, what: str) -> dict:
        deadline = time.monotonic() + 120
        while self.latest is None or not predicate(self.latest):
            left = deadline - time.monotonic()
            assert left > 0, f"{what} not shown in 120 s; the page last had {self.latest and self.latest['html']}"
            with contextlib.suppress(TimeoutError):
                self.latest = json.loads(self.socket.recv(timeout=left))
        return self.latest


def stalled(message: dict) -> bool:
    return bool(message["state"]["monitoring"]["stalled_since"]) and "Monitoring stalled" in message["html"]["alerts"]


def told(receiver, incident_id: int, reason: str) -> list:
    return [r for r in receiver.requests
            if r.body["incident"] and r.body["incident"]["id"] == incident_id and r.body["reason"] == reason]


def test_stopping_the_worker_and_beat_stalls_every_page_and_notifies_once(
        checks_every_2_seconds, receiver, django_user_model, tmp_path):
    webhook(receiver.url, levels=["orange", "red"])
    cookie = session_cookie(django_user_model)
    env = {**subprocess_env(), "GLMADMIN_HOST_NAME": "local",
           "GLMADMIN_MONITORING_STALLED_AFTER_CHECKS": str(STALLED_AFTER_CHECKS),
           "GLMADMIN_MONITORING_STALLED_MIN_SECONDS": "0"}

    def monitoring(run: str):
        """The alerts worker and beat, as the Procfile starts them; stopped (TERM to each group) on exit."""
        stack = contextlib.ExitStack()
        for name in ("alerts", "beat"):
            stack.enter_context(process_group(["bash", "-c", procfile()[name]], tmp_path / f"{name}-{run}.log", env))
        return stack

    def last_check():
        return rd.client().hget(deadman.heartbeat_key(), "at")

    with (uvicorn(tmp_path / "web-a.log", env) as (web_a, _), uvicorn(tmp_path / "web-b.log", env) as (web_b, _),
          live_socket(web_a, cookie) as socket):
        page = Page(socket)
        with monitoring("first"):
            wait_for(last_check, 120, "a first completed disk check", pace=0.2)
            page.shows(lambda m: not m["state"]["monitoring"]["stalled_since"], "a page without the stall banner")
        stopped_after = float(last_check())

        since = datetime.fromtimestamp(stopped_after, UTC).isoformat()  # the last check that completed
        page.shows(lambda m: stalled(m) and m["state"]["monitoring"]["stalled_since"] == since,
                   "the stall banner, since the last completed check")
        incident = wait_for(lambda: Incident.objects.open().filter(kind=Incident.Kind.MONITORING).first(), 120,
                            "the monitoring incident")
        assert incident.level == "orange"
        wait_for(lambda: told(receiver, incident.pk, "opened"), 120, "the stall's notification", pace=0.2)
        # A page opened now draws the banner in its first render, from the other web process too.
        first_render = httpx.get(f"{web_b}/", headers={"Cookie": cookie}, timeout=30).text
        assert "data-monitoring-stalled" in first_render and "Monitoring stalled</strong> since" in first_render

        with monitoring("again"):
            page.shows(lambda m: not m["state"]["monitoring"]["stalled_since"], "the banner cleared")
            wait_for(lambda: told(receiver, incident.pk, "resolved"), 120, "the resolution's notification", pace=0.2)

    incident.refresh_from_db()
    assert not incident.is_open
    # Two web processes watched; one claimed the incident and told the channel, once each way.
    assert len(told(receiver, incident.pk, "opened")) == 1 and len(told(receiver, incident.pk, "resolved")) == 1
