"""A value hovering at a threshold produces no storm: at most one message per incident transition."""

import random

import pytest

from alerts.models import IncidentEvent, Notification
from tests.support import notify as notify_support
from tests.support.notify import reading, webhook, work

receiver = notify_support.receiver  # the real webhook receiver, as a fixture of this module
pytestmark = pytest.mark.django_db


@pytest.fixture
def readings(django_capture_on_commit_callbacks, time_machine):
    """Feed readings 10 s apart, like the beat check, with the worker keeping up."""
    time_machine.move_to("2026-03-01 10:00Z", tick=False)

    def feed(values):
        for value in values:
            with django_capture_on_commit_callbacks(execute=True):
                reading(value)
            work()
            time_machine.shift(10)

    return feed


def test_hovering_at_red_sends_one_message(readings, receiver):
    webhook(receiver.url)
    readings([97.1, 96.0, 96.9, 97.3, 96.2, 97.0, 95.4, 97.9, 96.5] * 10)  # 90 readings around 97 %
    assert [(r.body["reason"], r.body["level"]) for r in receiver.requests] == [("opened", "red")]


def test_hovering_at_yellow_then_clearing_sends_two(readings, receiver):
    webhook(receiver.url)
    readings([84.9, 85.1, 84.8, 85.0, 83.5, 85.2] * 20 + [82.9])
    assert [r.body["reason"] for r in receiver.requests] == ["opened", "resolved"]


def test_random_walk_sends_one_message_per_transition(readings, receiver):
    webhook(receiver.url)
    rng = random.Random(7)
    value, values = 90.0, []
    for _ in range(300):
        value = min(100.0, max(75.0, value + rng.uniform(-1.5, 1.5)))
        values.append(value)
    readings(values)

    transitions = IncidentEvent.objects.exclude(kind="acknowledged").count()
    assert 2 < transitions < 60  # the walk crosses thresholds, and hysteresis keeps it from flapping each time
    assert len(receiver.requests) == Notification.objects.count() == transitions
