"""A daily restart is claimed once per day per engine: a second delivery of the day's task (redelivered, late,
sent by a second beat) restarts nothing. The engines are real processes the supervisor starts (a stand-in
runtime, tests/support/slow_engine.py)."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from inference import schedules
from inference.models import Engine
from inference.tasks import scheduled_restart
from tests.support.engines import events, starts
from tests.support.processes import wait_for

from .slow_engines import ours

pytestmark = pytest.mark.django_db(transaction=True)


def at(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=ZoneInfo("UTC"))


@pytest.fixture
def utc(settings):
    settings.TIME_ZONE = "UTC"


def test_one_claim_a_day_and_a_late_copy_after_midnight_is_still_the_same_days(utc):
    engine = Engine.objects.create(name="daily", port=8999, model="/models/x", served_model_name="x")
    claim = schedules.claim_daily_restart
    assert claim(engine.pk, at(1, 3, 0))
    assert not claim(engine.pk, at(1, 3, 0))  # the same message twice
    assert not claim(engine.pk, at(1, 3, 29))  # a late copy, just inside the task's 30 min expiry
    assert claim(engine.pk, at(2, 3, 0))  # the next day's
    assert claim(engine.pk, at(3, 23, 50))
    assert not claim(engine.pk, at(4, 0, 10))  # a copy of 23:50's that arrives after midnight
    assert claim(engine.pk, at(4, 23, 50))  # the day after's own restart
    Engine.objects.filter(pk=engine.pk).update(enabled=False)
    assert not claim(engine.pk, at(6, 3, 0))  # a disabled engine is not restarted by its schedule


def test_two_deliveries_of_the_days_restart_restart_the_engine_once(slow_engine, utc, time_machine):
    engine, model = slow_engine(daily_restart_at=at(1, 3, 0).time())
    time_machine.move_to(at(1, 3, 0))
    assert scheduled_restart.apply(args=[engine.pk]).get() == f"restart of {engine.name} requested"
    assert scheduled_restart.apply(args=[engine.pk]).get() == f"skipped: {engine.name} had its scheduled restart today"
    time_machine.move_to(at(1, 3, 20))  # a late duplicate, still within the task's expiry
    assert scheduled_restart.apply(args=[engine.pk]).get() == f"skipped: {engine.name} had its scheduled restart today"
    engine.refresh_from_db()
    assert engine.restart_generation == 1
    assert events(engine) == ["starting"]  # the stopped engine was started once
    wait_for(lambda: starts(model), 60, "the engine process to start")
    assert len(starts(model)) == 1 and len(ours(engine, model)) == 1
    time_machine.move_to(at(2, 3, 0))  # the next day's restart happens
    assert scheduled_restart.apply(args=[engine.pk]).get() == f"restart of {engine.name} requested"
    engine.refresh_from_db()
    assert engine.restart_generation == 2
