"""With Redis down, pages still render from what the database holds, and say what they cannot show.

The server runs with its own redis-server, which the test stops: the real failure, not a stand-in.
"""

import subprocess

import httpx
import pytest

from alerts.models import Incident
from monitoring.disk_check import simulate
from tests.support.processes import subprocess_env, uvicorn, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "pw-redis-down-1"


@pytest.fixture
def private_redis(tmp_path):
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    wait_for(lambda: subprocess.run(["redis-cli", "-s", str(sock), "ping"], capture_output=True, text=True,
                                    timeout=5).stdout.strip() == "PONG", 30, "redis-server answering")
    yield proc, f"unix://{sock}"
    proc.kill()
    proc.wait()


def logged_in(base: str, django_user_model) -> httpx.Client:
    django_user_model.objects.create_user("ops", password=PASSWORD)
    client = httpx.Client(base_url=base, timeout=30, follow_redirects=True)
    client.get("/login/")
    response = client.post("/login/", data={"username": "ops", "password": PASSWORD,
                                            "csrfmiddlewaretoken": client.cookies["csrftoken"]})
    assert response.status_code == 200 and "Log out" in response.text
    return client


def test_the_dashboard_renders_from_the_database_while_redis_is_down(private_redis, tmp_path, django_user_model):
    redis_proc, redis_url = private_redis
    simulate("orange")  # an incident in the database: the page must still show it
    env = {**subprocess_env(), "REDIS_URL": redis_url}
    with uvicorn(tmp_path / "uvicorn.log", env=env) as (base, _):
        client = logged_in(base, django_user_model)
        assert "NOT READABLE" not in client.get("/").text
        redis_proc.kill()
        redis_proc.wait()
        page = client.get("/")
        assert page.status_code == 200, (tmp_path / "uvicorn.log").read_text()[-3000:]
        assert "NOT READABLE: telemetry" in page.text  # the status bar says what is missing
        assert "Live telemetry is kept in Redis" in page.text
        assert Incident.objects.open().get().title in page.text  # incidents come from the database
        assert "DISK:" in page.text and "Simulated disk alert" in page.text
