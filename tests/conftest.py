
import pytest
from django.conf import settings
from playwright.sync_api import expect

from glmadmin.lib import redis as rd
from tests.support.processes import uvicorn

# Playwright's assertions wait 5 s by default: too short on a loaded 2-core CI machine, where a page
# update behind an engine or a websocket can take longer. They still pass as soon as the page is right.
expect.set_options(timeout=30_000)


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
    log = tmp_path / "uvicorn.log"
    with uvicorn(log) as (base, _):
        yield base
    print(f"uvicorn's output:\n{log.read_text()[-4000:]}")  # shown by pytest for a failed test
