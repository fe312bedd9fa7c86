import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings

from glmadmin.lib import redis as rd
from tests.support.processes import ROOT, free_port, subprocess_env


@pytest.fixture(autouse=True)
def _clean_redis_state():
    """Admission flag and live digest belong to one test at a time."""
    yield
    client = rd.client()
    for key in client.scan_iter(match=f"{settings.REDIS_PREFIX}:*", count=500):
        if not key.startswith(f"{settings.REDIS_PREFIX}:asgi"):
            client.delete(key)


@pytest.fixture
def no_default_filesystems(db):
    """The migration watches / by default; tests that count readings start empty."""
    from monitoring.models import WatchedFilesystem

    WatchedFilesystem.objects.all().delete()


@pytest.fixture
def server(transactional_db, tmp_path):
    """The real ASGI server (uvicorn) in its own process, on the test database."""
    port = free_port()
    # Its output goes to a file, not a pipe: nobody reads a pipe while the test runs, and a server that
    # has logged 64 KB into a full pipe blocks in its next log line.
    log = tmp_path / "uvicorn.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "glmadmin.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log"],
            cwd=ROOT, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:  # poll until the server answers; that is the readiness signal
        try:
            httpx.get(f"{base}/login/", timeout=1)
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"uvicorn did not start:\n{log.read_text()}") from None
            time.sleep(0.1)
    yield base
    proc.terminate()
    proc.wait(timeout=10)
    print(f"uvicorn's output:\n{log.read_text()[-4000:]}")  # shown by pytest for a failed test
