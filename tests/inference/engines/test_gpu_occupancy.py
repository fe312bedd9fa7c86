"""A start onto a GPU another process holds waits, with the reason and an incident, instead of crashing into
back-off; once the GPU is free the engine starts by itself and the incident resolves.

The supervisor is the real one and the engine the real vLLM (the CPU build, the tiny demo model), killed once
it has started: a start is what these tests are about, its load is a minute of both CPUs here. The holder is a
real process too, so its name is what the reason shows. Only NVML is faked: it reports the holder on GPU 0
(tests/support/fake_nvml.py).
"""

import subprocess
from io import StringIO

import pytest
from django.core.management import call_command

from alerts.models import Incident
from glmadmin.lib import processes
from inference import demo, gpu_occupancy, supervisor
from inference.models import Engine
from inference.models import EngineState as S
from tests.support.engines import engine_processes, events, require_runtime, starts_logged, step_until, stop_engines
from tests.support.fake_nvml import FakeNvml, NVMLError, gpu, install
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)
GIB = 2**30


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    require_runtime()
    return demo.make_model(tmp_path_factory.mktemp("models") / "demo")


@pytest.fixture
def make(transactional_db, model):
    """make(**fields) -> an engine of the demo model on a free port; whatever was started for it is killed after."""
    made = []

    def make(**fields):
        port = free_port()  # and a name of its own: the engine's log (which counts its starts) outlives the row
        made.append(Engine.objects.create(name=f"gpu-{port}", port=port, model=str(model),
                                          served_model_name="demo", enforce_eager=True, shutdown_timeout=5,
                                          extra_args=demo.ENGINE_ARGS, **fields))
        return made[-1]

    yield make
    for engine in made:
        stop_engines(engine.port)


def spawned(engine) -> list[int]:
    """The engine processes on its port (leading their group: not a log writer forked a moment ago)."""
    return [p.pid for p in engine_processes(engine.port) if processes.leads_group(p.pid)]


@pytest.fixture
def holder():
    """A foreign process (as NVML would list it on a GPU): `sleep` in this test's own process group."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def incident(engine):
    return Incident.objects.open().filter(source=f"engine-gpu:{engine.host}:{engine.name}").first()


def waits(engine, steps: int = 5):
    for _ in range(steps):  # as many beats as it takes: each sees the GPU held, none starts the engine
        supervisor.reconcile(engine.pk)
    engine.refresh_from_db()
    return engine


def test_a_start_onto_a_held_gpu_waits_then_starts_once_it_is_free(make, monkeypatch, holder):
    fake = install(monkeypatch, FakeNvml([gpu(0, processes=[(holder.pid, 12 * GIB)]), gpu(1)]))
    engine = make(gpu_ids="0")

    engine = waits(engine)
    reason = f"waiting: GPU 0 holds 12.0 GiB of foreign process {holder.pid} (sleep)"
    assert (engine.state, engine.state_reason, engine.pid) == (S.STOPPED, reason, None)
    assert starts_logged(engine) == 0 and spawned(engine) == []  # never spawned, so never crashed
    assert events(engine) == ["stopped"]  # the wait is recorded once, not at every step
    opened = incident(engine)
    assert opened.kind == Incident.Kind.ENGINE and opened.level == "orange" and reason in opened.message
    status = StringIO()
    call_command("engine_status", stdout=status)
    assert f"{engine.name}: {reason}" in status.getvalue()

    # Freed: what is left on its GPU is below the limit, and a big process on a GPU it does not use is no matter.
    fake.gpus[0]["processes"] = [(holder.pid, int(0.5 * GIB))]
    fake.gpus[1]["processes"] = [(holder.pid, 40 * GIB)]
    engine = step_until(engine, lambda e: e.state == S.STARTING, 60, "the start once the GPU is free")
    assert starts_logged(engine) == 1 and spawned(engine) == [engine.pid]
    assert events(engine) == ["stopped", "starting"]
    assert incident(engine) is None
    assert Incident.objects.get(source=opened.source).resolved_at is not None


def test_an_engine_disabled_while_it_waits_is_stopped_and_its_incident_resolved(make, monkeypatch, holder):
    install(monkeypatch, FakeNvml([gpu(0, processes=[(holder.pid, 12 * GIB)])]))
    engine = make(gpu_ids="0")
    engine = waits(engine)
    assert engine.state_reason.startswith(gpu_occupancy.WAITING) and incident(engine) is not None
    engine.enabled = False
    engine.save(update_fields=["enabled"])
    engine = waits(engine, 2)
    assert (engine.state, engine.state_reason) == (S.STOPPED, "disabled")
    assert incident(engine) is None and starts_logged(engine) == 0


def test_the_limit_is_the_setting_and_a_broken_nvml_does_not_keep_engines_down(monkeypatch, settings, holder):
    fake = install(monkeypatch, FakeNvml([gpu(0, processes=[(holder.pid, 3 * GIB), (holder.pid + 1, None)])]))
    assert settings.ENGINE_FOREIGN_GIB == 2  # the telemetry rules' default foreign-process limit
    assert [h.pid for h in gpu_occupancy.holders([0], settings.ENGINE_FOREIGN_GIB)] == [holder.pid]
    settings.ENGINE_FOREIGN_GIB = 4
    assert gpu_occupancy.holders([0], settings.ENGINE_FOREIGN_GIB) == []
    assert gpu_occupancy.holders([], 0) == []  # no GPUs listed: NVML is not asked
    fake.failing["nvmlDeviceGetCount"] = NVMLError("Unknown Error")
    assert gpu_occupancy.holders([0], 0.1) == []


def test_the_engine_starts_when_nvml_stops_listing_the_holder(make, monkeypatch, holder):
    """The holder exits (NVML lists nothing any more): the same as freed, from back-off too."""
    fake = install(monkeypatch, FakeNvml([gpu(0, processes=[(holder.pid, 12 * GIB)])]))
    engine = make(gpu_ids="0")
    engine = waits(engine)
    # As if it had crashed before and its back-off is over: a waiting engine in back-off stays there.
    Engine.objects.filter(pk=engine.pk).update(state=S.BACKOFF, backoff_until=engine.state_changed_at)
    engine = waits(engine, 2)
    assert engine.state == S.BACKOFF and engine.state_reason.startswith(gpu_occupancy.WAITING)
    fake.gpus[0]["processes"] = []
    engine = step_until(engine, lambda e: e.state == S.STARTING, 60, "the start")
    assert starts_logged(engine) == 1 and spawned(engine) == [engine.pid]
    assert incident(engine) is None
