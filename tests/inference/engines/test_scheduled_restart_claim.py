"""A daily restart is claimed once per day per engine: a second delivery of the day's task (redelivered, late,
sent by a second beat) restarts nothing. The task delivered three times to a real engine, which restarts once:
tests/inference/engines/test_supervision_real_engine.py (it shares that module's engine start)."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from inference import schedules
from inference.models import Engine

pytestmark = pytest.mark.django_db


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
