"""A paused gateway tells API clients what to do, not the host's paths: the red alert's own text ("disk at
97.0 % on <path>") stays with the operators (dashboard, notifications); the 503 says to retry, and when.

The real gateway (uvicorn) and the real red-alert path (an incident opened as the disk check opens one).
"""

import httpx
import pytest
from django.conf import settings

from alerts.models import Incident
from inference.models import ApiKey
from monitoring.disk_check import simulate

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_pause_names_no_host_path_and_says_when_to_retry(server):
    key = ApiKey(name="paused")
    plain = key.new_secret()
    key.save()
    simulate("red")
    alert = Incident.objects.open().get(level="red").message
    assert "on test volume" in alert  # what the operators read: where the disk is full

    paused = httpx.post(f"{server}/v1/chat/completions", headers={"Authorization": f"Bearer {plain}"}, timeout=30,
                        json={"model": "any", "messages": [{"role": "user", "content": "hi"}]})
    assert paused.status_code == 503
    wait = settings.GATEWAY_PAUSED_RETRY_AFTER
    assert paused.headers["retry-after"] == str(wait)
    error = paused.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "requests_paused")
    assert "test volume" not in error["message"] and "disk at" not in error["message"]
    assert alert not in error["message"]
    assert error["message"].endswith(f"Try again in {wait} s.")
    simulate(None)
