"""A supervisor killed in the middle of a restart (after it started the new process, before it wrote that down)
leaves one engine on the port, never two: the next supervisor finds the process on the engine's port, sees it
is this engine's and adopts it instead of starting another, which would hold the same port and GPUs.

The supervisor that dies is a real process stepping the engine as the worker does; it kills itself (SIGKILL,
no clean-up) at the moment it would record the new process. The engine is a real process (the stand-in
runtime tests/support/slow_engine.py, which binds its port at once as vLLM does).
"""

import signal
import subprocess
import sys

import pytest

from inference import control
from inference.models import EngineState as S
from tests.support.engines import events, starts, step_until
from tests.support.processes import ROOT, subprocess_env, wait_for

from .slow_engines import ours

pytestmark = pytest.mark.django_db(transaction=True)

DYING_SUPERVISOR = """
import os, signal, sys, time
import django
django.setup()
from inference import supervisor

recorded = supervisor.transition
def transition(engine, state, reason, **fields):
    if state == "starting":  # the new process runs; its pid is not in the database yet
        os.kill(os.getpid(), signal.SIGKILL)
    return recorded(engine, state, reason, **fields)
supervisor.transition = transition
supervisor.STEP_LOCK_SECONDS = 15  # its step only spawns the process: the next supervisor need not wait 2 min
while True:
    supervisor.reconcile(int(sys.argv[1]))
    time.sleep(0.3)
"""


def test_a_supervisor_killed_mid_restart_leaves_one_engine_on_the_port(slow_engine, settings, tmp_path):
    engine, model = slow_engine()
    (model / "loaded").touch()
    engine = step_until(engine, lambda e: e.state == S.READY, 120, "the first start")
    old = engine.pid
    control.request_restart(engine)
    env = {**subprocess_env(), "GLMADMIN_ENGINE_PYTHON": settings.ENGINE_PYTHON,
           "DJANGO_SETTINGS_MODULE": "glmadmin.settings"}
    with (tmp_path / "supervisor.log").open("w") as log:
        dying = subprocess.run([sys.executable, "-c", DYING_SUPERVISOR, str(engine.pk)], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, timeout=300)
    assert dying.returncode == -signal.SIGKILL, (tmp_path / "supervisor.log").read_text()
    new = wait_for(lambda: [p for p in starts(model) if p != old], 60, "the new process")
    engine.refresh_from_db()
    assert engine.state == S.STOPPED and engine.pid is None  # the database never learnt of the new process
    assert [p.pid for p in ours(engine, model)] == new  # the old one stopped, the new one runs

    # The next supervisor (its predecessor's lock expires first) adopts the process; one engine throughout.
    def ready_with_one_process(e):
        assert len(ours(e, model)) <= 1, "two engines on one port"
        return e.state == S.READY

    engine = step_until(engine, ready_with_one_process, 300, "ready again")
    assert [engine.pid] == new == [p.pid for p in ours(engine, model)]
    assert len(starts(model)) == 2  # the first start and the restart: nothing started a third
    assert "adopted running process" in engine.events.filter(state=S.STARTING).order_by("pk").last().reason
    assert events(engine)[-2:] == ["starting", "ready"]
