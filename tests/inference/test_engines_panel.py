"""The dashboard's engine card says one probe time: the first probe's, kept in a ready engine's reason, went
stale beside the latest one ("probe 200 ms" over "ready; one-token probe 100 ms")."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from inference.models import Engine
from inference.models import EngineState as S

pytestmark = pytest.mark.django_db


def card(admin_client, name: str) -> str:
    html = admin_client.get("/").content.decode()
    return re.search(rf'<div class="engine" data-engine="{name}".*?</dl>.*?(?=<div class="engine" |</section>)',
                     html, re.S).group(0)


def test_a_ready_engine_shows_its_latest_probe_only(admin_client):
    Engine.objects.create(name="glm", port=8200, model="/m", served_model_name="glm", state=S.READY, pid=4242,
                          state_reason="ready; one-token probe 100 ms", last_probe_ms=200)
    shown = card(admin_client, "glm")
    assert "200 ms" in shown and "100 ms" not in shown


def test_a_reason_that_says_more_is_shown(admin_client):
    busy = "ready; busy: probe failed (timed out) while 12 requests run"
    Engine.objects.create(name="glm", port=8200, model="/m", served_model_name="glm", state=S.READY, pid=4242,
                          state_reason=busy)
    Engine.objects.create(name="old", port=8201, model="/m", served_model_name="old", state=S.FAILED,
                          state_reason="exited with status 1 three times")
    assert busy in card(admin_client, "glm")
    assert "exited with status 1 three times" in card(admin_client, "old")


def test_uptime_reads_as_words_from_the_first_second(admin_client):
    """Django's timesince says "0 minutes" for an engine ready 20 s ago: the card says "under a minute"."""
    now = timezone.now()
    Engine.objects.create(name="new", port=8200, model="/m", served_model_name="new", state=S.READY, pid=1,
                          ready_at=now - timedelta(seconds=20))
    Engine.objects.create(name="old", port=8201, model="/m", served_model_name="old", state=S.READY, pid=2,
                          ready_at=now - timedelta(hours=3, minutes=2))
    Engine.objects.create(name="down", port=8202, model="/m", served_model_name="down", state=S.STARTING, pid=3,
                          ready_at=now - timedelta(hours=1))
    up = {name: re.search(r"<dd data-engine-up>(.*?)</dd>", card(admin_client, name)).group(1)
          for name in ("new", "old", "down")}
    assert up == {"new": "under a minute", "old": "3\xa0hours, 2\xa0minutes", "down": "–"}
