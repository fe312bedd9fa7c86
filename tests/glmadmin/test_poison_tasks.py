"""A task that keeps killing its worker is dropped after three starts, with an incident, instead of
being re-queued for ever (tasks are acknowledged late and re-queued when their worker dies)."""

import os
import signal
import subprocess
import time

import pytest

from alerts.models import Incident
from glmadmin import poison
from tests.support import poison_tasks
from tests.support.processes import ROOT, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(tmp_path, settings):
    queue = f"{settings.REDIS_PREFIX}-poison"
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/celery"), "-A", "glmadmin", "worker", "--concurrency", "1", "-Q", queue,
             "-n", f"poison-{os.getpid()}@%h", "-I", "tests.support.poison_tasks", "--loglevel", "INFO"],
            cwd=ROOT, env=subprocess_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    yield queue
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    print(f"worker log:\n{log.read_text()[-4000:]}")  # shown by pytest for a failed test


def test_a_task_that_kills_its_worker_is_dropped_with_an_incident(worker, tmp_path):
    marker = tmp_path / "starts"
    poison_tasks.kill_own_process.apply_async((str(marker),), queue=worker)
    source = f"task:{poison_tasks.kill_own_process.name}"
    deadline = time.monotonic() + 120
    while not Incident.objects.open().filter(source=source).exists():  # polling the database the worker writes
        assert time.monotonic() < deadline, "the task was not dropped"
        time.sleep(0.2)
    incident = Incident.objects.open().get(source=source)
    assert incident.kind == Incident.Kind.WORKER and "3 times" in incident.message
    assert marker.read_text().count("started") == poison.MAX_RUNS  # ran three times; the fourth was dropped
