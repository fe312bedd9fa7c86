"""Liveness does not restart an engine that serves: a probe that fails while the engine's own metrics show work
(requests running, or vllm:generation_tokens_total growing since the previous failed probe) counts as busy,
not dead, and says so in the reason. With nothing flowing, three failed probes still make it unhealthy, and
the restart drains first, for at most ENGINE_LIVENESS_DRAIN_SECONDS.

The supervisor is the real one, the engine a real process it starts and probes over HTTP
(tests/support/slow_engine.py): the test makes it answer the probe late and sets what its /metrics show.
"""

from datetime import timedelta
from io import StringIO

import httpx
import pytest
from django.core.management import call_command

from inference.models import EngineState as S
from tests.support.engines import events, starts, step_until

pytestmark = pytest.mark.django_db(transaction=True)
PROBES = 4  # one more than the liveness threshold: the old code restarted by then


@pytest.fixture
def ready(slow_engine, settings):
    settings.ENGINE_PROBE_INTERVAL = 1
    settings.ENGINE_PROBE_TIMEOUT = 1
    engine, model = slow_engine()
    (model / "loaded").touch()
    return step_until(engine, lambda e: e.state == S.READY, 120, "ready"), model


def load(engine, **state):
    """What the stand-in does from now on: probe_delay (s), running (requests), generating (tokens a read)."""
    httpx.post(f"{engine.base_url}/control", json=state, timeout=30).raise_for_status()


def probed(engine, times: int):
    """Step the supervisor until it has probed the engine `times` more times."""
    for _ in range(times):
        before = engine.last_probe_at
        engine = step_until(engine, lambda e, before=before: e.last_probe_at != before or e.state != S.READY, 60,
                            "the next probe")
    return engine


@pytest.mark.parametrize(("flowing", "said"), [({"running": 2}, "2 request(s) running"),
                                                ({"generating": 7}, "7 tokens generated since the previous")])
def test_slow_probes_while_tokens_flow_do_not_restart_the_engine(ready, settings, flowing, said):
    engine, model = ready
    pid = engine.pid
    load(engine, probe_delay=30, **flowing)
    engine = probed(engine, PROBES)
    assert (engine.state, engine.pid) == (S.READY, pid)
    assert engine.last_probe_ms is None  # the probes did fail
    assert engine.probe_failures < settings.ENGINE_LIVENESS_THRESHOLD
    assert engine.state_reason.startswith("ready; busy: probe failed (ReadTimeout") and said in engine.state_reason
    assert starts(model) == [pid] and events(engine) == ["starting", "ready"]
    status = StringIO()
    call_command("engine_status", stdout=status)
    assert f"{engine.name}: ready; busy: " in status.getvalue()

    load(engine, probe_delay=0, running=0, generating=0)  # the load is over: the probe answers again
    engine = step_until(engine, lambda e: e.state_reason.startswith("ready; one-token probe"), 60, "a probe answered")
    assert (engine.state, engine.pid, engine.probe_failures) == (S.READY, pid, 0)


def test_slow_probes_with_nothing_flowing_restart_the_engine_after_a_short_drain(ready, settings):
    engine, model = ready
    old = engine.pid
    load(engine, probe_delay=30)
    engine = step_until(engine, lambda e: e.state != S.READY, 120, "unhealthy")
    assert engine.state == S.UNHEALTHY and engine.state_reason.startswith("3 failed probes in a row")
    engine = step_until(engine, lambda e: e.state == S.DRAINING, 60, "the drain")
    drain = engine.stop_deadline - engine.state_changed_at  # both read the clock in the same step
    assert abs(drain - timedelta(seconds=settings.ENGINE_LIVENESS_DRAIN_SECONDS)) < timedelta(seconds=1)
    engine = step_until(engine, lambda e: e.state == S.READY, 120, "the restart")
    assert engine.pid != old and starts(model) == [old, engine.pid]
    assert events(engine) == ["starting", "ready", "unhealthy", "draining", "stopped", "starting", "ready"]
