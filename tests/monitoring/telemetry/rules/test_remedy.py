"""The remedy ladder of the GPU-memory rule (prefix cache reset -> soft restart -> full restart, each step only
while the condition lasts), against the process that plays the engine's endpoints (tests/support/
sleep_responder.py) and NVML faked per process (tests/support/fake_nvml.py): the two stand-ins allowed here.

The rule raises from a cycle built by hand, as the sampler would make it; the ladder's steps then run one by one
as the host queue's task would run them (remedy.advance), with NVML saying what the GPU holds in between.
"""

import base64
import io
import json
import subprocess
import sys

import httpx
import psutil
import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from alerts.models import IncidentEvent
from inference.control import host_queue
from inference.models import Engine
from inference.models import EngineState as S
from monitoring.models import TelemetryRules
from monitoring.telemetry import remedy
from monitoring.telemetry.rules import evaluate as rules
from monitoring.telemetry.rules.state import Baseline, State
from tests.inference.engines.test_soft_restart import control, posts, responder, sleep_mode  # noqa: F401 - fixtures
from tests.support import fake_nvml
from tests.support.telemetry_rules import cycle, gpu, open_incident, proc, reading

pytestmark = pytest.mark.django_db(transaction=True)
GIB = 1024**3
TOTAL = 24  # GiB: the GPU of the rule tests; the engine reserves 90 % = 21.6 GiB (+ 2 % margin: 22.08 GiB)
BASELINE, GROWN, CURED = 21.0, 23.2, 21.4  # GiB held by the engine: after its start, grown, back


class EngineGpu(fake_nvml.FakeNvml):
    """GPU 0 with the engine's process on it, holding `held` GiB (the rest of the GPU holds 0.2 GiB more);
    `after_wake`, when set, is what it holds once the engine has woken up (the responder saw /wake_up)."""

    def __init__(self, pid: int, base: str):
        super().__init__([fake_nvml.gpu(0, total=TOTAL * GIB)])
        self.pid, self.base, self.held, self.after_wake = pid, base, GROWN, None

    def _now(self) -> float:
        if self.after_wake is not None and "/wake_up" in posts(self.base):
            return self.after_wake
        return self.held

    def nvmlDeviceGetMemoryInfo(self, handle):
        used = int((self._now() + 0.2) * GIB)
        return fake_nvml.SimpleNamespace(used=used, total=TOTAL * GIB, free=TOTAL * GIB - used)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [fake_nvml.SimpleNamespace(pid=self.pid, usedGpuMemory=int(self._now() * GIB))]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        return []


@pytest.fixture
def rules_now(db, settings):
    settings.REMEDY_SETTLE_SECONDS = 1  # the task's countdown; the test runs each step itself
    settings.ENGINE_SOFT_RESTART_STEP_TIMEOUT = 30  # no step here hangs: room for a loaded machine
    # Raised on the first cycle. (The row of the migration is gone after an earlier test's flush: made again.)
    TelemetryRules.objects.update_or_create(pk=1, defaults={"gpu_memory_seconds": 0, "stuck_seconds": 0})


@pytest.fixture
def ladder(responder, monkeypatch, rules_now):  # noqa: F811 - the fixture imported above
    engine, proc_, base = responder(gpu_ids="0", state_reason="ready; one-token probe 5 ms", ready_at=timezone.now())
    fake = fake_nvml.install(monkeypatch, EngineGpu(proc_.pid, base))
    return engine, base, fake


def memory_cycle(engine: Engine, held: float):
    percent = 100 * (held + 0.2) / TOTAL
    return cycle(gpus=[gpu(0, memory=percent, processes=[proc(engine.pid, held, "VLLM::EngineCore",
                                                                engine_id=engine.pk)])])


def queued_plans(engine: Engine) -> list[dict]:
    """The remedy runs waiting in the engine's host queue (the Celery broker is the test's Redis)."""
    from glmadmin.lib import redis as rd

    plans = []
    for raw in rd.client().lrange(f"{settings.REDIS_PREFIX}:celery:{host_queue(engine.host)}", 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] == "monitoring.tasks.remedy_engine":
            args, _, _ = json.loads(base64.b64decode(message["body"]))
            plans.append(args[0])
    return plans


def raise_and_plan(engine: Engine) -> dict:
    rules.evaluate(memory_cycle(engine, BASELINE))  # ready after its start: the baseline is taken
    rules.evaluate(memory_cycle(engine, GROWN))  # grown past its reservation: raised, the ladder queued
    incident = open_incident("gpu-memory")
    assert "remedy: prefix cache reset -> soft restart -> full restart, each step only while the condition " \
           "lasts" in incident.message
    plans = queued_plans(engine)
    assert len(plans) == 1 and plans[0]["steps"] == ["prefix-cache", "soft", "full"]
    return plans[0]


def actions() -> list[str]:
    return list(IncidentEvent.objects.filter(kind=IncidentEvent.Kind.ACTION).order_by("pk").values_list(
        "note", flat=True))


def test_cured_by_the_prefix_cache_reset_stops_there(ladder):
    engine, base, fake = ladder
    plan = raise_and_plan(engine)
    plan, delay = remedy.advance(plan)
    assert posts(base) == ["/reset_prefix_cache"] and plan["phase"] == "check" and delay == 1
    fake.held = CURED
    assert remedy.advance(plan) == (None, 0)  # cured: over
    assert posts(base) == ["/reset_prefix_cache"]  # no soft restart
    [note] = actions()
    assert note.startswith("step 1 of 3, prefix cache reset: prefix cache reset in ") and " s; cured: GPU 0 " \
        "memory at 90.0 % (threshold 95 %), engine soft holds 21.4 GiB, within its 21.6 GiB reservation" in note
    engine.refresh_from_db()
    assert engine.soft_restarts == 0 and engine.restart_generation == 0
    assert engine.events.filter(reason__startswith="remedy: step 1 of 3").exists()  # the engine's history too


def test_still_there_after_the_reset_the_soft_restart_and_the_memory_back_to_its_baseline(ladder):
    engine, base, fake = ladder
    fake.after_wake = CURED
    plan, _ = remedy.advance(raise_and_plan(engine))  # the reset: vLLM frees no GPU memory with it
    plan, delay = remedy.advance(plan)  # still there: the soft restart, then the settle time
    assert posts(base) == ["/reset_prefix_cache", "/sleep?level=1", "/wake_up", "/v1/completions"]
    assert plan["phase"] == "check" and delay == 1
    assert remedy.advance(plan) == (None, 0)
    first, second = actions()
    assert first.startswith("step 1 of 3, prefix cache reset: prefix cache reset in ") and "; not cured: GPU 0 " \
        "memory at 97.5 % (threshold 95 %), engine soft holds 23.2 GiB, more than its 21.6 GiB reservation" in first
    assert second.startswith("step 2 of 3, soft restart: soft restart in ")
    assert "GPU memory back to 21.4 GiB of the 21.0 GiB baseline; cured: GPU 0 memory at 90.0 %" in second
    engine.refresh_from_db()
    assert engine.soft_restarts == 1 and engine.restart_generation == 0 and engine.state == S.READY
    assert engine.events.filter(reason="GPU memory back to 21.4 GiB of the 21.0 GiB baseline").exists()


def test_a_failed_soft_restart_goes_on_to_the_full_restart(ladder):
    engine, base, fake = ladder
    control(base, wake="fail")
    plan, _ = remedy.advance(raise_and_plan(engine))
    plan, _ = remedy.advance(plan)  # not cured: the soft restart, which fails at the wake-up
    assert plan["phase"] == "full" and plan["steps"][plan["at"]] == "full"
    engine.refresh_from_db()
    assert engine.restart_generation == plan["generation"] == 1 and engine.state == S.DRAINING
    assert actions()[1].startswith("step 2 of 3, soft restart: soft restart not done (soft restart failed at "
                                   "wake: HTTP 500")
    assert "); full restart instead (after " in actions()[1]
    plan, delay = remedy.advance(plan)  # the supervisor has not restarted it yet
    assert plan["phase"] == "full" and delay == remedy.POLL_FULL and len(actions()) == 2
    # What the supervisor records once the new process is ready (its own tests start real engines): a new
    # process, holding what NVML says.
    new = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        Engine.objects.filter(pk=engine.pk).update(
            state=S.READY, running_generation=1, ready_at=timezone.now(), state_reason="ready; one-token probe 5 ms",
            pid=new.pid, process_started_at=psutil.Process(new.pid).create_time())
        fake.pid, fake.held = new.pid, CURED
        plan, delay = remedy.advance(plan)
        assert plan["phase"] == "check" and delay == 1
        assert remedy.advance(plan) == (None, 0)
    finally:
        new.kill()
        new.wait(timeout=30)
    assert actions()[2].startswith("step 3 of 3, full restart: full restart in ")
    assert "; cured: GPU 0 memory at 90.0 %" in actions()[2]


def test_still_there_after_every_step_ends_after_the_full_restart(ladder):
    engine, base, fake = ladder
    plan, _ = remedy.advance(raise_and_plan(engine))
    plan, _ = remedy.advance(plan)  # soft restart: the memory stays grown (fake.after_wake unset)
    plan, _ = remedy.advance(plan)  # not cured: the full restart is asked for
    assert plan["phase"] == "full"
    note = actions()[1]
    assert note.startswith("step 2 of 3, soft restart: soft restart in ") and "GPU memory not back to its " \
        "post-start baseline: 23.2 GiB against the 21.0 GiB baseline (GPU 0); not cured" in note
    Engine.objects.filter(pk=engine.pk).update(state=S.READY, running_generation=1, ready_at=timezone.now())
    plan, _ = remedy.advance(plan)
    assert remedy.advance(plan) == (None, 0)
    assert "; not cured; no step left: GPU 0 memory at 97.5 %" in actions()[2]


def test_an_engine_stopped_during_the_settle_time_is_not_started_again(ladder):
    """An operator stops the engine while the ladder waits to re-read its condition: the next step (here the full
    restart, the soft one being left out once it is not ready) must not enable it again."""
    engine, base, fake = ladder
    plan, _ = remedy.advance(raise_and_plan(engine))  # the reset, not cured
    plan, _ = remedy.advance(plan)  # the soft restart, not cured: the full restart is next
    Engine.objects.filter(pk=engine.pk).update(enabled=False, state=S.DRAINING)  # stop_engine meanwhile
    plan["phase"], plan["at"] = "step", plan["steps"].index("full")
    assert remedy.advance(plan) == (None, 0)
    engine.refresh_from_db()
    assert engine.enabled is False and engine.restart_generation == 0
    assert actions()[-1] == "full restart not taken: the engine was stopped"


def test_a_refused_reset_is_recorded_and_the_ladder_goes_on(ladder):
    engine, base, fake = ladder
    control(base, reset="refuse")
    plan, _ = remedy.advance(raise_and_plan(engine))
    fake.held = CURED  # cured meanwhile: the ladder says so, whatever made it
    assert remedy.advance(plan) == (None, 0)
    assert "prefix cache not reset after " in actions()[0]
    assert "(vLLM refused it: running requests still hold cached blocks); cured" in actions()[0]


def test_the_stuck_rule_goes_straight_to_the_full_restart(ladder):
    engine, base, _ = ladder
    rules.evaluate(cycle(engines=[reading(engine, requests_waiting=3.0, generation_tokens_per_s=0.0)]))
    incident = open_incident("stuck")
    assert "engine soft restarted at " in incident.message and "remedy" not in incident.message
    engine.refresh_from_db()
    assert engine.restart_generation == 1 and queued_plans(engine) == [] and posts(base) == []


def test_an_engine_without_soft_restarts_is_restarted_in_full_at_once(ladder):
    engine, base, _ = ladder
    Engine.objects.filter(pk=engine.pk).update(soft_restart=False)
    engine.refresh_from_db()
    rules.evaluate(memory_cycle(engine, GROWN))
    assert "engine soft restarted at " in open_incident("gpu-memory").message
    assert Engine.objects.get(pk=engine.pk).restart_generation == 1 and queued_plans(engine) == []


def test_the_baseline_is_taken_after_a_start_only(ladder):
    engine, _, _ = ladder
    rules.evaluate(memory_cycle(engine, BASELINE))
    stored = State.load(engine.host).memory[engine.pk]
    assert stored["gpus"] == {"0": int(BASELINE * GIB)} and stored["process"].startswith(f"{engine.pid}:")
    rules.evaluate(memory_cycle(engine, GROWN))  # the same process: the baseline stays
    assert State.load(engine.host).memory[engine.pk]["gpus"] == {"0": int(BASELINE * GIB)}
    # Ready after a soft restart is not after a start: nothing is taken for a process without a baseline.
    other = Engine.objects.create(name="other", port=engine.port + 1, model="/m", served_model_name="o",
                                  gpu_ids="1", state=S.READY, pid=engine.pid, ready_at=timezone.now(),
                                  state_reason="soft restart in 3.1 s (drain 2.0 s)")
    rules.evaluate(cycle(gpus=[gpu(1, processes=[proc(engine.pid, 5.0, engine_id=other.pk)])]))
    assert other.pk not in State.load(engine.host).memory


def test_the_memory_check_without_a_baseline_says_so(ladder):
    engine, _, _ = ladder
    message = remedy.memory_after_soft_restart(engine=engine)
    assert message.startswith("GPU memory after the soft restart 23.2 GiB on GPU 0; no post-start baseline")


def test_the_remedy_task_runs_in_the_engines_host_queue(ladder):
    engine, base, fake = ladder
    plan = raise_and_plan(engine)
    assert remedy.run(plan) == "remedy: next check in 1 s"
    # The first run's message (still there: nothing consumes the queue here) and the one it queued.
    assert sorted(p["phase"] for p in queued_plans(engine)) == ["check", "step"]
    assert httpx.get(f"{base}/calls", timeout=10).json().count("POST /reset_prefix_cache") == 1


# --- the TTFT-drift rule, where it is set to act ---------------------------------------------------------------

def histogram(fast: int, slow: int) -> dict:
    """Cumulative counts: `fast` first tokens within 0.5 s, `slow` ones between 1 and 2.5 s."""
    return {"0.5": fast, "1.0": fast, "2.5": fast + slow, "+Inf": fast + slow}


def raise_drift(engine: Engine) -> dict:
    TelemetryRules.objects.update_or_create(pk=1, defaults={"drift_seconds": 0, "drift_restart": True})
    state = State.load(engine.host)  # the run's first-hour baseline, as the rule collected it: 0.4 s
    state.baselines[engine.pk] = Baseline(run=f"0:{engine.process_started_at}", value=0.4)
    state.save(0)
    rules.evaluate(cycle(engines=[reading(engine, ttft_p95=1.6)]))
    assert "remedy: prefix cache reset -> soft restart" in open_incident("ttft-drift").message
    [plan] = queued_plans(engine)
    assert plan["condition"] == {"kind": "ttft-drift", "baseline": 0.4, "factor": 2.0, "since": None}
    return plan


def test_a_drift_cured_by_the_prefix_cache_reset(ladder):
    engine, base, _ = ladder
    control(base, ttft=histogram(0, 40))
    plan, _ = remedy.advance(raise_drift(engine))  # the reset, and the window's start
    assert posts(base) == ["/reset_prefix_cache"]
    control(base, ttft=histogram(30, 40))  # 30 first tokens since, all fast
    assert remedy.advance(plan) == (None, 0)
    [note] = actions()
    assert note.startswith("step 1 of 3, prefix cache reset: prefix cache reset in ")
    assert "; cured: time to first token p95 0.47 s on engine soft over " in note
    assert "1.2× its baseline of 0.40 s (limit 2×)" in note


def test_a_drift_still_there_goes_on_to_the_soft_restart(ladder):
    engine, base, _ = ladder
    control(base, ttft=histogram(0, 40))
    plan, _ = remedy.advance(raise_drift(engine))
    control(base, ttft=histogram(0, 60))  # 20 more, all slow
    plan, _ = remedy.advance(plan)  # not cured: the soft restart
    assert "/sleep?level=1" in posts(base) and plan["phase"] == "check"
    assert "; not cured: time to first token p95 " in actions()[0]


def test_without_requests_after_the_step_the_drift_is_not_judged_and_the_ladder_stops(ladder):
    engine, base, _ = ladder
    control(base, ttft=histogram(0, 40))
    plan, delay = remedy.advance(raise_drift(engine))
    for _ in range(remedy.RECHECKS - 1):
        plan, delay = remedy.advance(plan)  # no request yet: read again after the settle time
        assert plan["phase"] == "check" and delay == 1 and actions() == []
    assert remedy.advance(plan) == (None, 0)
    assert "; not judged: no request got its first token in the " in actions()[0]
    assert posts(base) == ["/reset_prefix_cache"]  # no restart on a guess


def test_restart_engine_soft_says_whether_the_memory_is_back(ladder):
    engine, _, fake = ladder
    rules.evaluate(memory_cycle(engine, BASELINE))  # the post-start baseline
    fake.after_wake = 21.3
    out = io.StringIO()
    call_command("restart_engine", engine.name, "--soft", stdout=out)
    assert "soft: GPU memory back to 21.3 GiB of the 21.0 GiB baseline" in out.getvalue()
    fake.after_wake = 23.2  # a wake-up that did not bring it back
    out = io.StringIO()
    call_command("restart_engine", engine.name, "--soft", stdout=out)
    assert ("soft: GPU memory not back to its post-start baseline: 23.2 GiB against the 21.0 GiB baseline (GPU 0)"
            in out.getvalue())
