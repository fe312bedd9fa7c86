"""A task that keeps killing its worker is dropped after three starts, with an incident, instead of
being re-queued for ever (tasks are acknowledged late and re-queued when their worker dies)."""

import os

import pytest

from alerts.models import Incident
from glmadmin import poison
from tests.support import poison_tasks
from tests.support.processes import ROOT, process_group, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(tmp_path, settings):
    queue, log = f"{settings.REDIS_PREFIX}-poison", tmp_path / "worker.log"
    with process_group([str(ROOT / ".venv/bin/celery"), "-A", "glmadmin", "worker", "--concurrency", "1", "-Q",
                        queue, "-n", f"poison-{os.getpid()}@%h", "-I", "tests.support.poison_tasks",
                        "--loglevel", "INFO"], log):
        yield queue
    print(f"worker log:\n{log.read_text()[-4000:]}")  # shown by pytest for a failed test


def test_a_task_that_kills_its_worker_is_dropped_with_an_incident(worker, tmp_path):
    marker = tmp_path / "starts"
    poison_tasks.kill_own_process.apply_async((str(marker),), queue=worker)
    source = f"task:{poison_tasks.kill_own_process.name}"
    wait_for(Incident.objects.open().filter(source=source).exists, 120, "the task dropped", pace=0.2)
    incident = Incident.objects.open().get(source=source)
    assert incident.kind == Incident.Kind.WORKER and "3 times" in incident.message
    assert marker.read_text().count("started") == poison.MAX_RUNS  # ran three times; the fourth was dropped
