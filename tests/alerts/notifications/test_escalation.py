"""Escalation: a red incident nobody acknowledges reaches the on-call channel after 15 minutes and a
manager after 60; acknowledging stops it. Exactly the expected messages, in order, to a real receiver."""

from datetime import timedelta

import pytest

from alerts.incidents import acknowledge
from alerts.models import Incident
from alerts.tasks import repeat_red_alerts
from tests.support import notify as notify_support
from tests.support.notify import reading, webhook, work

receiver = notify_support.receiver  # a real webhook receiver, as a fixture of this module
pytestmark = pytest.mark.django_db


@pytest.fixture
def step(django_capture_on_commit_callbacks):
    def run(percent):
        with django_capture_on_commit_callbacks(execute=True):
            reading(percent)
        work()

    return run


@pytest.fixture
def ladder(receiver, time_machine):
    time_machine.move_to("2026-03-01 10:00Z", tick=False)
    webhook(f"{receiver.url}?to=team", name="team", levels=["red"], repeat_minutes=0)
    webhook(f"{receiver.url}?to=oncall", name="oncall", levels=["red"], repeat_minutes=0, escalate_after_minutes=15)
    webhook(f"{receiver.url}?to=manager", name="manager", levels=["red"], repeat_minutes=0,
            escalate_after_minutes=60)
    return time_machine


def at_minute(clock, minute: int) -> None:
    clock.move_to(f"2026-03-01 10:{minute:02d}Z" if minute < 60 else f"2026-03-01 11:{minute - 60:02d}Z",
                  tick=False)
    repeat_red_alerts.apply()
    work()


def sent(hook) -> list[tuple[str, str]]:
    return [(r.query["to"][0], r.body["reason"]) for r in hook.requests]


def test_unacknowledged_red_climbs_the_ladder_in_order(step, receiver, ladder):
    step(98)  # red at 10:00: the team hears it; the escalation steps do not yet
    for minute in (5, 14):
        at_minute(ladder, minute)
    assert sent(receiver) == [("team", "opened")]
    at_minute(ladder, 15)
    at_minute(ladder, 16)  # a later beat sends nothing twice
    assert sent(receiver) == [("team", "opened"), ("oncall", "escalation")]
    at_minute(ladder, 59)
    at_minute(ladder, 60)
    assert sent(receiver) == [("team", "opened"), ("oncall", "escalation"), ("manager", "escalation")]
    assert "nobody acknowledged it for 60 min" in receiver.requests[-1].body["subject"]


def test_acknowledging_stops_the_escalation(step, receiver, ladder, admin_user):
    step(98)
    at_minute(ladder, 15)
    acknowledge(Incident.objects.open().get(), admin_user)
    at_minute(ladder, 60)
    at_minute(ladder, 90)
    assert sent(receiver) == [("team", "opened"), ("oncall", "escalation")]


def test_a_step_that_was_told_hears_the_resolve_and_one_that_was_not_does_not(step, receiver, ladder):
    step(98)
    at_minute(ladder, 20)
    ladder.shift(timedelta(minutes=1))
    step(50)
    work()
    told = sent(receiver)
    assert told[:2] == [("team", "opened"), ("oncall", "escalation")]
    assert sorted(told[2:]) == [("oncall", "resolved"), ("team", "resolved")]  # the manager was never told
