"""Beat's scheduler (glmadmin/beat.py) on the test's database and Redis: it sleeps until a task is due
instead of spinning through the last 10 ms, and asks the database for schedule changes at most every 5 s."""

import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import PeriodicTask

from glmadmin import beat
from glmadmin.celery import app
from glmadmin.lib import redis as rd
from glmadmin.schedules import every_seconds

pytestmark = pytest.mark.django_db(transaction=True)  # the scheduler commits and reconnects as in beat


@pytest.fixture
def queue(settings):
    """A queue of the test's own, holding only what the scheduler sends; emptied afterwards."""
    name = f"beat-test-{time.monotonic_ns()}"
    yield name, f"{settings.REDIS_PREFIX}:celery:{name}"  # the Redis list kombu keeps it in
    rd.client().delete(f"{settings.REDIS_PREFIX}:celery:{name}")


def one_row_every_second(queue: str) -> PeriodicTask:
    PeriodicTask.objects.update(enabled=False)  # the migrations' rows would send to the real lanes
    return PeriodicTask.objects.create(name="beat test", task="celery.accumulate", interval=every_seconds(1),
                                       queue=queue, args=json.dumps([1]))


def test_beat_sleeps_until_a_task_is_due_instead_of_spinning(queue):
    name, key = queue
    one_row_every_second(name)
    scheduler = beat.Scheduler(app=app)
    ticks, slept, deadline = 0, 0.0, time.monotonic() + 4.5
    try:
        while time.monotonic() < deadline:  # celery.beat.Service.start's loop, for 4.5 s
            interval = scheduler.tick()
            ticks += 1
            if interval and interval > 0:
                pause = min(interval, max(deadline - time.monotonic(), 0))
                slept += pause
                time.sleep(pause)  # beat's own wait, not the test's
    finally:
        scheduler.close()  # its last sync, while the test's database is there
    sent = rd.client().llen(key)
    print(f"{ticks} ticks, {sent} tasks sent, {slept:.2f} s asleep")
    assert sent >= 3  # every second, for 4.5 s
    # One tick sends a task, the next sleeps until the next is due (and one extra tick per due time at most).
    # The stock scheduler ticks ~30 times per task here: it wakes 10 ms early and spins until the task is due.
    assert ticks <= 3 * sent + 3
    assert slept >= 2.5


def test_the_database_is_asked_for_schedule_changes_at_most_every_5_s(queue):
    scheduler = beat.Scheduler(app=app)  # reads the schedule
    try:
        scheduler._changes_asked -= beat.CHANGES_EVERY  # 5 s later
        with CaptureQueriesContext(connection) as asked:
            assert scheduler.schedule_changed() is False
        assert len(asked) >= 1
        one_row_every_second(queue[0])  # an edit, as the admin makes one
        with CaptureQueriesContext(connection) as asked:
            assert scheduler.schedule_changed() is False  # within 5 s of the last question: not asked
            assert "beat test" not in scheduler.schedule
        assert len(asked) == 0
        scheduler._changes_asked -= beat.CHANGES_EVERY  # 5 s later
        assert "beat test" in scheduler.schedule
    finally:
        scheduler.close()  # its last sync, while the test's database is there
