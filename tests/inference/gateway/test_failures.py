"""What a client gets when the gateway itself fails: OpenAI's error shape, never a bare 500 page."""

import subprocess
import sys
import time

import httpx
import pytest

from inference.models import ApiKey
from tests.support.processes import ROOT, free_port, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server_without_redis(transactional_db, tmp_path):
    """The real uvicorn, pointed at a Redis socket where nothing listens (Redis down)."""
    port = free_port()
    env = {**subprocess_env(), "REDIS_URL": f"unix://{tmp_path}/no-redis.sock"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "glmadmin.asgi:application", "--host", "127.0.0.1",
                             "--port", str(port), "--no-access-log"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:  # poll until it answers at all: the readiness signal
        try:
            httpx.get(f"{base}/v1/", timeout=5)
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.1)
    yield base, proc
    proc.terminate()
    proc.wait(timeout=10)


def test_redis_down_is_a_503_in_openais_shape_and_logged(server_without_redis):
    base, proc = server_without_redis
    key = ApiKey(name="no-redis")
    plain = key.new_secret()
    key.save()
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
    for path, method in (("/v1/chat/completions", "POST"), ("/v1/models", "GET")):
        response = httpx.request(method, f"{base}{path}", json=body if method == "POST" else None, timeout=30,
                                 headers={"Authorization": f"Bearer {plain}"})
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/json" and int(response.headers["retry-after"]) > 0
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("server_error", "service_unavailable")
        assert error["message"] == ("The gateway cannot reach its state store (Redis) right now. "
                                    "Try again shortly.")
    proc.terminate()
    log = proc.communicate(timeout=10)[0]
    assert "gateway: POST /v1/chat/completions failed" in log and "Traceback" in log
