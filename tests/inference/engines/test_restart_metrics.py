"""Restarts in numbers on /metrics and on the engine panel: counts of full and soft restarts, and how long the
last of each took (a full restart timed from its events: out of service -> ready after the start)."""

from datetime import timedelta

import pytest
from django.template import Context, Template
from django.utils import timezone

from inference.models import Engine, EngineEvent
from inference.models import EngineState as S
from inference.restart_metrics import last_full_restart_seconds
from monitoring.telemetry import exporter

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine():
    return Engine.objects.create(name="glm", port=8200, model="/m", served_model_name="glm", state=S.READY,
                                 restarts=1, soft_restarts=2, last_soft_restart_seconds=4.9)


def events(engine, *steps):
    """(seconds after the first, state, previous, reason) in the order the supervisor wrote them."""
    start = timezone.now() - timedelta(hours=1)
    for seconds, state, previous, reason in steps:
        EngineEvent.objects.create(engine=engine, at=start + timedelta(seconds=seconds), state=state,
                                   previous=previous, reason=reason)


def started(engine):
    events(engine, (0, S.STARTING, S.STOPPED, "starting"), (40, S.READY, S.STARTING, "ready; one-token probe 9 ms"))


def test_a_full_restart_is_timed_from_the_drain_to_ready_again(engine):
    started(engine)
    events(engine, (100, S.DRAINING, S.READY, "restart requested"), (103, S.STOPPED, S.DRAINING, "stopped"),
           (103.5, S.STARTING, S.STOPPED, "starting"), (154.3, S.READY, S.STARTING, "ready; one-token probe 8 ms"),
           (300, S.SOFT_RESTART, S.READY, "soft restart: draining"), (304.9, S.READY, S.SOFT_RESTART, "soft restart"))
    assert last_full_restart_seconds(engine.pk) == pytest.approx(54.3)
    metrics = exporter.render().decode()
    assert 'glmadmin_engine_last_restart_seconds{engine="glm",host="local"} 54.3' in metrics
    assert 'glmadmin_engine_restarts_total{engine="glm",host="local"} 1.0' in metrics
    assert 'glmadmin_engine_soft_restarts_total{engine="glm",host="local"} 2.0' in metrics
    panel = Template("{% load engine_tags %}{% engines_panel %}").render(Context({}))
    assert "1 full (last 54.3 s) · 2 soft (last 4.9 s)" in panel


def test_a_crash_restarted_and_a_failed_soft_restart_count_from_leaving_service(engine):
    started(engine)
    events(engine, (100, S.BACKOFF, S.READY, "process 12 exited; retrying in 5 s"),
           (105, S.STARTING, S.BACKOFF, "starting"), (160, S.READY, S.STARTING, "ready; one-token probe 8 ms"))
    assert last_full_restart_seconds(engine.pk) == pytest.approx(60)
    events(engine, (200, S.SOFT_RESTART, S.READY, "soft restart: draining"),
           (210, S.DRAINING, S.SOFT_RESTART, "soft restart failed at wake: HTTP 500; full restart"),
           (212, S.STOPPED, S.DRAINING, "stopped"), (212.5, S.STARTING, S.STOPPED, "starting"),
           (262, S.READY, S.STARTING, "ready; one-token probe 8 ms"))
    assert last_full_restart_seconds(engine.pk) == pytest.approx(52)  # from the fall-back's drain


def test_a_first_start_and_a_stop_and_start_by_an_operator_are_no_restart(engine):
    started(engine)
    assert last_full_restart_seconds(engine.pk) is None
    events(engine, (100, S.DRAINING, S.READY, "disabled"), (101, S.STOPPED, S.DRAINING, "stopped"),
           (3000, S.STARTING, S.STOPPED, "starting"), (3040, S.READY, S.STARTING, "ready; one-token probe 8 ms"))
    assert last_full_restart_seconds(engine.pk) is None
    assert "glmadmin_engine_last_restart_seconds{" not in exporter.render().decode()
    panel = Template("{% load engine_tags %}{% engines_panel %}").render(Context({}))
    assert "1 full · 2 soft (last 4.9 s)" in panel
