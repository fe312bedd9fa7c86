"""The soft-restart protocol (drain, sleep, wake up, probe) and its fall-backs, against a process that plays
the engine's endpoints (tests/support/sleep_responder.py); the real CPU engine's fall-back is in test_pool.py."""

import subprocess
import sys
import threading

import httpx
import psutil
import pytest
from django.utils import timezone

from glmadmin.lib import processes
from inference import soft_restart, supervisor
from inference.gateway import routing
from inference.models import Engine
from inference.models import EngineState as S
from monitoring.telemetry import exporter
from tests.support.processes import ROOT, free_port, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
RESPONDER = ROOT / "tests" / "support" / "sleep_responder.py"


@pytest.fixture
def sleep_mode(settings):
    settings.ENGINE_SLEEP_MODE = "on"  # as on a CUDA host
    settings.ENGINE_SOFT_RESTART_STEP_TIMEOUT = 2


def responder_engine(flags=("--enable-sleep-mode",), **fields):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(RESPONDER), str(port), *flags], start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(base), 180, "the responder listening")  # a loaded machine starts Python slowly
    engine = Engine.objects.create(
        name="soft", port=port, model="/models/x", served_model_name="soft-model", **{"soft_restart": True, **fields},
        shutdown_timeout=10, state=S.READY, pid=proc.pid, process_started_at=psutil.Process(proc.pid).create_time(),
        running_config={"port": port, "listen_address": "127.0.0.1", "served_model_name": "soft-model"})
    return engine, proc, base


def _answers(base) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def responder(sleep_mode):
    started = []

    def start(**kwargs):
        started.append(responder_engine(**kwargs))
        return started[-1]

    yield start
    for _, proc, _ in started:
        processes.kill_group(proc.pid)
        proc.wait(timeout=30)


def calls(base) -> list[str]:
    return httpx.get(f"{base}/calls", timeout=10).json()


def posts(base) -> list[str]:
    return [c.removeprefix("POST ") for c in calls(base) if c.startswith("POST ")]


def control(base, **behaviour):
    httpx.post(f"{base}/control", json=behaviour, timeout=10).raise_for_status()


def test_a_soft_restart_drains_sleeps_wakes_probes_and_keeps_the_process(responder):
    engine, proc, base = responder()
    reported = []
    outcome = soft_restart.run(engine, lambda step, seconds: reported.append(step))
    assert outcome.soft, outcome.reason
    assert [name for name, _ in outcome.steps] == reported == ["drain", "sleep", "wake", "probe"]
    assert posts(base) == ["/sleep?level=1", "/wake_up", "/v1/completions"]  # in this order, each once
    engine.refresh_from_db()
    assert engine.state == S.READY and engine.pid == proc.pid and proc.poll() is None  # the same process
    assert engine.soft_restarts == 1 and engine.last_soft_restart_seconds == pytest.approx(outcome.seconds)
    assert engine.restart_generation == engine.running_generation == 0  # no full restart asked for
    states = list(engine.events.order_by("pk").values_list("state", "reason"))
    assert [s for s, _ in states] == [S.SOFT_RESTART, S.READY]
    assert states[-1][1].startswith("soft restart in ") and "sleep" in states[-1][1]
    # On /metrics: the count, and how long it took.
    metrics = exporter.render().decode()
    assert 'glmadmin_engine_soft_restarts_total{engine="soft",host="local"} 1.0' in metrics
    assert f'glmadmin_engine_last_soft_restart_seconds{{engine="soft",host="local"}} {outcome.seconds!r}' in metrics


def test_the_engine_is_out_of_routing_and_nothing_sleeps_while_requests_are_in_flight(responder):
    engine, _, base = responder()
    control(base, running=1)
    result = {}
    worker = threading.Thread(target=lambda: result.update(outcome=soft_restart.run(engine)))
    worker.start()
    try:
        # The drain has read the in-flight count twice while a request ran: still no sleep, and not routed to.
        wait_for(lambda: sum("/metrics running=1" in c for c in calls(base)) >= 2, 30, "the drain reading")
        assert posts(base) == []
        assert Engine.objects.get(pk=engine.pk).state == S.SOFT_RESTART
        routes = routing.table()[engine.name]
        assert routes["state"] == S.SOFT_RESTART and routing.states_of({"soft": routes}) == {"soft-model": "loading"}
    finally:
        control(base, running=0)
        worker.join(60)
    assert result["outcome"].soft
    assert posts(base) == ["/sleep?level=1", "/wake_up", "/v1/completions"]


@pytest.mark.parametrize("wake, why", [("fail", "soft restart failed at wake: HTTP 500"),
                                       ("hang", "soft restart failed at wake: no answer in 2 s")])
def test_a_failed_or_hung_wake_up_falls_back_to_the_full_restart(responder, wake, why):
    engine, proc, base = responder()
    control(base, wake=wake)
    outcome = soft_restart.run(engine)
    assert not outcome.soft and outcome.reason.startswith(why)
    engine.refresh_from_db()
    # Already drained: the process is stopped at once, and the restart brings up a new one.
    assert engine.state == S.DRAINING and engine.state_reason.startswith(why)
    assert engine.state_reason.endswith("; full restart")
    assert engine.restart_generation == outcome.generation == engine.running_generation + 1
    assert proc.wait(timeout=30) is not None  # SIGTERM reached it
    assert engine.soft_restarts == 0


@pytest.mark.parametrize("flags, fields, why", [
    (("--enable-sleep-mode",), {"soft_restart": False}, "soft restarts are not allowed for this engine"),
    ((), {}, "the running process was started without sleep mode"),
])
def test_an_engine_that_cannot_sleep_gets_the_full_restart_with_the_reason(responder, flags, fields, why):
    engine, proc, base = responder(flags=flags, **fields)
    outcome = soft_restart.run(engine)
    assert not outcome.soft and outcome.reason.startswith(why)
    assert posts(base) == []  # never asked to sleep
    engine.refresh_from_db()
    assert engine.restart_generation == outcome.generation == 1  # the supervisor restarts it gracefully
    assert engine.events.filter(reason__startswith=f"soft restart not possible: {why}").exists()


def test_without_sleep_mode_on_this_host_it_is_the_full_restart(responder, settings):
    engine, _, base = responder()
    settings.ENGINE_SLEEP_MODE = "off"  # vLLM's CPU build
    outcome = soft_restart.run(engine)
    assert not outcome.soft and "sleep mode needs CUDA" in outcome.reason and posts(base) == []


def test_a_soft_restart_abandoned_half_way_is_finished_by_the_supervisor(responder):
    engine, proc, _ = responder()
    # Its caller died after the engine went to sleep: the engine's lock is free, the state says soft restart.
    Engine.objects.filter(pk=engine.pk).update(state=S.SOFT_RESTART, state_changed_at=timezone.now())
    assert supervisor.reconcile(engine.pk)
    engine.refresh_from_db()
    assert engine.state == S.DRAINING and engine.state_reason == "soft restart abandoned half-way; full restart"
    assert engine.restart_generation == 1
    assert proc.wait(timeout=30) is not None


def test_the_supervisor_does_not_step_an_engine_while_its_soft_restart_runs(responder):
    engine, _, base = responder()
    control(base, running=1)  # the soft restart waits in its drain
    worker = threading.Thread(target=soft_restart.run, args=(engine,))
    worker.start()
    try:
        wait_for(lambda: Engine.objects.get(pk=engine.pk).state == S.SOFT_RESTART, 30, "the soft restart running")
        assert supervisor.reconcile(engine.pk) is False  # busy: the soft restart holds the engine
        assert Engine.objects.get(pk=engine.pk).state == S.SOFT_RESTART
    finally:
        control(base, running=0)
        worker.join(60)
    assert Engine.objects.get(pk=engine.pk).state == S.READY
