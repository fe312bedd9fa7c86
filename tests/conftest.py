
import pytest
from django.conf import settings
from playwright.sync_api import expect

from glmadmin.lib import redis as rd
from tests.support.processes import uvicorn

# Playwright's assertions wait 5 s by default: too short on a loaded 2-core CI machine, where a page
# update behind an engine or a websocket can take longer. They still pass as soon as the page is right.
expect.set_options(timeout=30_000)

# scripts/test runs the suite in two processes (pytest-xdist). Tests that start a real vLLM engine run one after
# another in one of two lanes: the chat's engine (one port, shared by the chat and telemetry packages) and the
# pool's (the supervisor's and the gateway's engines, on ports of their own). Every other module runs whole in
# whichever process is free (its module fixtures are set up once). Each process has its own data directory and
# Redis key prefix (scripts/test).
ENGINE_LANES = {
    "engine:chat": ("tests/inference/chat/", "tests/monitoring/telemetry/"),
    "engine:pool": ("tests/inference/engines/", "tests/inference/gateway/test_engines.py",
                    "tests/inference/test_demo.py"),
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    # A scheduler, not xdist_group marks: xdist 3.8 marks a group by rewriting a node's id, which pytest 9.2
    # no longer reads.
    from xdist.scheduler import LoadScopeScheduling

    class EngineTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            return next((lane for lane, paths in ENGINE_LANES.items() if path.startswith(paths)), path)

    return EngineTestsTogether(config, log)


# What the migrations put in the database (default schedules, the watched /, rules, policies). A transactional
# test ends with a flush that empties every table. Run serially, Django's ordering put every plain test before
# the first flush; two processes take whole modules in any order, so a plain test may come after one. It gets
# the defaults back inside its own transaction (rolled back with it): every test sees what it saw serially,
# a plain test the migrated database, a transactional one the emptied one.
MIGRATED_APPS = ("django_celery_beat", "monitoring", "alerts", "inference")
_migrated: dict = {"flushed": False}


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    from django.apps import apps
    from django.core import serializers

    models = [m for label in MIGRATED_APPS for m in apps.get_app_config(label).get_models()]
    with django_db_blocker.unblock():
        _migrated["data"] = serializers.serialize(
            "json", [obj for model in serializers.sort_dependencies([(None, models)])
                     for obj in model._default_manager.order_by("pk")])


def _flushes(item) -> bool:
    marker = item.get_closest_marker("django_db")
    return bool({"transactional_db", "live_server", "django_db_reset_sequences"} & set(item.fixturenames)
                or (marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences"))))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield
    if _flushes(item):
        _migrated["flushed"] = True


@pytest.fixture(autouse=True)
def _migrated_defaults(request):
    item = request.node
    uses_db = item.get_closest_marker("django_db") or "_django_db_helper" in item.fixturenames
    if not _migrated["flushed"] or not uses_db or _flushes(item):
        return
    request.getfixturevalue("_django_db_helper")  # the test's transaction has begun
    from django.core import serializers
    from django.core.management.color import no_style
    from django.db import connection

    models = set()
    for obj in serializers.deserialize("json", _migrated["data"]):
        obj.save()
        models.add(type(obj.object))
    # Rows put back with their ids: the next row the test creates must not take one of them.
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), models):
            cursor.execute(sql)


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
