"""A model that loads slowly, within the engine's startup budget, is waited for: the supervisor neither kills
nor restarts it, and it becomes ready in the same process. Past the budget it is stopped. The engine is a real
process the supervisor starts and steps (tests/support/slow_engine.py: it binds its port at once, as vLLM
does, and loads until the test says); the clock is moved, not slept."""

from datetime import timedelta

import psutil
import pytest
from django.utils import timezone

from inference import supervisor
from inference.models import EngineState as S
from tests.support.engines import events, starts, step_until
from tests.support.processes import wait_for

from .slow_engines import ours

pytestmark = pytest.mark.django_db(transaction=True)
BUDGET = 300


def started(slow_engine):
    engine, model = slow_engine(startup_timeout=BUDGET)
    engine = step_until(engine, lambda e: e.state == S.STARTING, 60, "the start")
    wait_for(lambda: starts(model), 120, "the engine process to start")
    return engine, model


def step_at(engine, time_machine, seconds: float):
    """One supervisor step `seconds` after the start began."""
    time_machine.move_to(engine.state_changed_at + timedelta(seconds=seconds))
    supervisor.reconcile(engine.pk)
    engine.refresh_from_db()
    return engine


def test_a_model_loading_within_its_budget_is_waited_for(slow_engine, time_machine):
    time_machine.move_to(timezone.now())
    engine, model = started(slow_engine)
    pid = engine.pid
    for seconds in (10, BUDGET / 2, BUDGET - 5):  # still loading, ever closer to the budget
        engine = step_at(engine, time_machine, seconds)
        assert (engine.state, engine.pid) == (S.STARTING, pid)
        assert psutil.pid_exists(pid) and [p.pid for p in ours(engine, model)] == [pid]
    (model / "loaded").touch()  # the model is in memory: /health and the probe answer
    engine = step_until(engine, lambda e: e.state == S.READY, 60, "ready")
    assert engine.pid == pid and starts(model) == [pid]  # the same process: never killed, never started again
    assert events(engine) == ["starting", "ready"]


def test_a_model_still_loading_past_its_budget_is_stopped(slow_engine, time_machine):
    time_machine.move_to(timezone.now())
    engine, model = started(slow_engine)
    pid = engine.pid
    engine = step_at(engine, time_machine, BUDGET + 5)
    assert engine.state == S.BACKOFF and f"not ready within its startup budget of {BUDGET} s" in engine.state_reason
    wait_for(lambda: not ours(engine, model), 30, "the slow process to be killed")
    assert starts(model) == [pid]
