"""The supervisor's hard cases on a real vLLM engine (the CPU build, the tiny random demo model without an end
of sequence), run as an OS user of its own (GLMADMIN_ENGINE_USER=nobody, as CI runs glmadmin as root).

A start costs 20-40 s of both CPUs here, so one engine process serves the module: the first test starts it,
and each later test's row (rows do not outlive a test) finds it on its port and adopts it, as a supervisor
must. The tests that restart it leave a new process ready for the next. In file order:

- a model that loads for longer than liveness would allow is waited for (its startup budget is what counts);
- the engine runs as the engine user and cannot read glmadmin's data directory;
- a model still loading past its budget is stopped (an engine of its own, killed a few seconds after spawn);
- under real load that makes probes time out, the engine is busy, not dead: it is not restarted;
- a hung engine (SIGSTOP: nothing flowing) is restarted after a short drain;
- the day's scheduled restart delivered three times restarts once, and a supervisor killed in the middle of that
  restart (after it spawned the process, before it wrote that down) leaves one engine on the port;
- two beats send every scheduled task twice, and each effect happens once.
"""

import contextlib
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from datetime import timedelta
from io import StringIO
from pathlib import Path

import psutil
import pytest
import time_machine as tm
from django.conf import settings as django_settings
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from alerts.models import Incident, IncidentEvent, Notification
from glmadmin.lib import processes, runas
from glmadmin.lib import redis as rd
from glmadmin.schedules import every_seconds
from inference import demo, engine_client, supervisor
from inference.models import Engine
from inference.models import EngineState as S
from inference.tasks import scheduled_restart
from monitoring.models import DiskSample, WatchedFilesystem
from tests.inference.engines.test_engine_environment import environ
from tests.support.engines import engine_processes, events, require_runtime, starts_logged, step_until, stop_engines
from tests.support.notify import webhook
from tests.support.processes import ROOT, free_port, process_group, python_for, subprocess_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
STARTUP = 300  # the startup budget: well above a real load here, however busy the machine
MAX_TOKENS = 4000  # an answer of the endless model runs this long (its context is 4,096 positions)
NOBODY = pwd.getpwnam("nobody")


@pytest.fixture(scope="module")
def shared():
    """A directory the engine user can read (pytest's own are root's alone, 0700): the model, the homes."""
    require_runtime()
    path = Path(tempfile.mkdtemp(prefix="glmadmin-engine-user-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def runtime(shared):
    """The engine runtime as nobody can run it (tests/support/processes.py: python_for)."""
    return str(python_for(runas.lookup("nobody"), Path(django_settings.ENGINE_PYTHON), shared))


@pytest.fixture(scope="module")
def model(shared):
    model = demo.make_model(shared / "model", endless=True)
    for path in model.iterdir():
        path.chmod(0o644)  # transformers saves the weights at 0600: an operator opens them to the engine user
    return model


@pytest.fixture(scope="module")
def port():
    port = free_port()
    yield port
    stop_engines(port)


@pytest.fixture(autouse=True)
def as_engine_user(settings, shared, runtime):
    """Engines run as nobody; probes as tight as the tests need them (one second, one second to answer)."""
    settings.ENGINE_USER = "nobody"
    settings.ENGINE_PYTHON = runtime
    settings.ENGINE_HOME_DIR = shared / "homes"
    settings.ENGINE_PROBE_INTERVAL = 1
    settings.ENGINE_PROBE_TIMEOUT = 1
    settings.ENGINE_LIVENESS_DRAIN_SECONDS = 3


def make(model, port: int, **fields) -> Engine:
    # Two sequences at most: a third request, and the probe, wait for one of them to finish.
    return Engine.objects.create(**{"name": "real", "port": port, "model": str(model), "served_model_name": "real",
                                    "enforce_eager": True, "shutdown_timeout": 5, "max_num_seqs": 2,
                                    "startup_timeout": STARTUP, "extra_args": demo.ENGINE_ARGS, **fields})


@pytest.fixture
def engine(transactional_db, model, port):
    return make(model, port)


@pytest.fixture
def ready(engine):
    """The module's engine, adopted (or started, for a test run alone) and ready."""
    return step_until(engine, lambda e: e.state == S.READY, STARTUP, "ready")


def one_process(engine: Engine) -> list[int]:
    """The engine processes on its port (those leading a process group: not a log writer forked a moment ago)."""
    pids = [p.pid for p in engine_processes(engine.port) if processes.leads_group(p.pid)]
    assert len(pids) <= 1, f"two engines on one port: {pids}"
    return pids


def test_a_model_loading_longer_than_liveness_allows_is_waited_for_within_its_budget(engine, settings):
    stop_engines(engine.port)  # a fresh start, not an adopted engine
    before = starts_logged(engine)
    engine = step_until(engine, lambda e: e.state == S.STARTING, 60, "the start")
    pid, began = engine.pid, timezone.now()

    def ready_in_the_same_process(e):
        assert e.state in (S.STARTING, S.READY) and e.pid == pid, (e.state, e.state_reason)
        assert one_process(e) in ([], [pid])  # never killed, never a second one (it binds its port late)
        return e.state == S.READY

    engine = step_until(engine, ready_in_the_same_process, STARTUP, "ready")
    loading = (engine.ready_at - began).total_seconds()
    # Probed for liveness from the spawn, three failed probes a second apart would have killed it long before.
    naive = settings.ENGINE_LIVENESS_THRESHOLD * (settings.ENGINE_PROBE_INTERVAL + settings.ENGINE_PROBE_TIMEOUT)
    print(f"model loaded in {loading:.1f} s")
    assert naive < loading < engine.startup_timeout
    assert events(engine) == ["starting", "ready"] and starts_logged(engine) - before == 1


def status_ids(pid: int, field: str) -> list[int]:
    """Uid: or Gid: of /proc/PID/status (real, effective, saved, filesystem), or Groups:."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return [int(value) for value in line.split()[1:]]
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[], capture_output=True,
                          text=True, timeout=60)


def test_the_engine_runs_as_the_engine_user_and_cannot_read_the_data_directory(ready, settings):
    engine = ready
    leader = psutil.Process(engine.pid)
    engine_side = [leader, *leader.children(recursive=True)]  # the API server and its EngineCore
    assert len(engine_side) >= 2
    for proc in engine_side:
        assert status_ids(proc.pid, "Uid") == [NOBODY.pw_uid] * 4, proc.cmdline()
        assert status_ids(proc.pid, "Gid") == [NOBODY.pw_gid] * 4 and status_ids(proc.pid, "Groups") == []
    home = settings.ENGINE_HOME_DIR / engine.name
    env = environ(engine.pid)
    assert (env["HOME"], env["USER"], env["XDG_CACHE_HOME"]) == (str(home), "nobody", str(home / ".cache"))
    assert (home.stat().st_uid, stat.S_IMODE(home.stat().st_mode)) == (NOBODY.pw_uid, 0o700)

    data = settings.DATA_DIR.stat()
    assert (data.st_uid, stat.S_IMODE(data.st_mode)) == (os.geteuid(), 0o700)
    log = supervisor.log_file(engine)
    for argv in (["ls", str(settings.DATA_DIR)], ["cat", str(log)]):
        tried = as_nobody(*argv)
        assert tried.returncode != 0 and "Permission denied" in tried.stderr, (argv, tried)
    # Its log is still written, by glmadmin's writer (root, in the engine's group), not by the engine.
    text = log.read_text()
    assert " starting as nobody: " in text and "Application startup complete" in text  # uvicorn, in vLLM
    writers = [p for p in processes.group_members(engine.pid) if p not in engine_side]
    assert writers and all(status_ids(p.pid, "Uid")[0] == os.geteuid() for p in writers)


def test_a_model_still_loading_past_its_budget_is_stopped(transactional_db, model, time_machine):
    time_machine.move_to(timezone.now())
    engine = make(model, free_port(), name="late", startup_timeout=30)
    before = starts_logged(engine)
    try:
        engine = step_until(engine, lambda e: e.state == S.STARTING, 60, "the start")
        pid = engine.pid
        time_machine.move_to(engine.state_changed_at + timedelta(seconds=25))
        supervisor.reconcile(engine.pk)
        engine.refresh_from_db()
        assert (engine.state, engine.pid) == (S.STARTING, pid)  # within the budget: left to load
        time_machine.move_to(engine.state_changed_at + timedelta(seconds=35))
        supervisor.reconcile(engine.pk)
        engine.refresh_from_db()
        assert engine.state == S.BACKOFF and "not ready within its startup budget of 30 s" in engine.state_reason
        wait_for(lambda: not processes.group_alive(pid), 30, "the loading engine to be killed")
        assert starts_logged(engine) - before == 1
    finally:
        stop_engines(engine.port)


def test_a_model_the_engine_user_cannot_read_is_not_started(transactional_db, tmp_path, model):
    engine = make(tmp_path, free_port(), name="closed")  # pytest's tmp_path: under root's own 0700 directory
    supervisor.reconcile(engine.pk)
    engine.refresh_from_db()
    assert engine.state == S.BACKOFF and starts_logged(engine) == 0
    closed = next(p for p in reversed(tmp_path.parents) if not p.stat().st_mode & 0o001)  # pytest's, root's
    assert engine.state_reason.startswith(f"cannot start as nobody: {closed} is closed to it (model {tmp_path})")

    (model / "model.safetensors").chmod(0o600)  # as transformers saves it
    try:
        engine = make(model, free_port(), name="weights")
        supervisor.reconcile(engine.pk)
        engine.refresh_from_db()
        assert engine.state == S.BACKOFF and starts_logged(engine) == 0
        assert engine.state_reason.startswith(f"cannot start as nobody: {model / 'model.safetensors'} is closed to it")
    finally:
        (model / "model.safetensors").chmod(0o644)


LOAD = """
import sys, threading, httpx
url, model, streams, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
body = {"model": model, "prompt": "hello", "max_tokens": max_tokens, "temperature": 1.0, "stream": True}
def answer():
    while True:  # one answer after another until the process is killed: the load never runs out by itself
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=None) as response:
            for _ in response.iter_raw():
                pass
threads = [threading.Thread(target=answer) for _ in range(streams)]
for thread in threads: thread.start()
for thread in threads: thread.join()
"""


@contextlib.contextmanager
def load(engine: Engine, streams: int):
    """`streams` endless answers at once from a client process; killing it ends them (vLLM aborts a request
    whose client went away)."""
    client = subprocess.Popen([sys.executable, "-c", LOAD, engine.base_url, engine.served_model_name,
                               str(streams), str(MAX_TOKENS)])
    try:
        yield client
    finally:
        client.kill()
        client.wait()


def metric(engine: Engine, name: str) -> float:
    """A metric of the engine's /metrics; asked again (up to a minute) while the busy engine does not answer, so
    an unanswered scrape is never read as 0."""
    values = wait_for(lambda: engine_client.metric_values(engine, timeout=15), 60, f"{engine.name}'s /metrics")
    return values.get(name, 0.0)


def probed(engine: Engine, times: int) -> Engine:
    """Step the supervisor until it has probed the engine `times` more times."""
    for _ in range(times):
        before = engine.last_probe_at
        engine = step_until(engine, lambda e, before=before: e.last_probe_at != before or e.state != S.READY, 60,
                            "the next probe")
    return engine


def test_probes_timing_out_under_real_load_do_not_restart_the_engine(ready, settings):
    engine, pid, before = ready, ready.pid, starts_logged(ready)
    # Two answers generate, the rest wait: so does each probe, past its second. Each of the 40 streams asks again
    # when its answer ends, so the engine stays saturated until the load is killed, however fast it generates.
    with load(engine, streams=40) as client:
        wait_for(lambda: metric(engine, "vllm:num_requests_waiting") >= 1, 120, "the engine saturated")
        engine = probed(engine, settings.ENGINE_LIVENESS_THRESHOLD + 1)  # the old code restarted by then
        # The load lasted through every probe: its client still runs, and the probes failed (below). Not the
        # engine's queue read now: on a quiet machine the engine finishes answers faster than 40 streams of
        # 4,000 events are read, and its queue was seen empty between them (stop 27: 0 running, 0 waiting).
        assert client.poll() is None
        assert (engine.state, engine.pid) == (S.READY, pid)
        assert engine.last_probe_ms is None  # the probes did fail
        assert engine.probe_failures < settings.ENGINE_LIVENESS_THRESHOLD
        assert engine.state_reason.startswith("ready; busy: probe failed (ReadTimeout"), engine.state_reason
        assert engine.state_reason.endswith("while 2 request(s) running")
        status = StringIO()
        call_command("engine_status", stdout=status)
        assert f"{engine.name}: ready; busy: " in status.getvalue()
    # The load is over: the probe answers again.
    engine = step_until(engine, lambda e: e.state_reason.startswith("ready; one-token probe"), 60, "a probe answered")
    assert (engine.state, engine.pid, engine.probe_failures) == (S.READY, pid, 0)
    assert events(engine) == ["starting", "ready"] and starts_logged(engine) == before


def test_a_hung_engine_is_restarted_after_a_short_drain(ready, settings):
    engine, old, before = ready, ready.pid, starts_logged(ready)
    os.kill(old, signal.SIGSTOP)  # hung: it answers neither the probe nor /metrics, so nothing is seen flowing
    try:
        engine = step_until(engine, lambda e: e.state != S.READY, 60, "unhealthy")
        assert engine.state == S.UNHEALTHY and engine.state_reason.startswith("3 failed probes in a row")
        engine = step_until(engine, lambda e: e.state == S.DRAINING, 60, "the drain")
        drain = engine.stop_deadline - engine.state_changed_at  # both read the clock in the same step
        assert abs(drain - timedelta(seconds=settings.ENGINE_LIVENESS_DRAIN_SECONDS)) < timedelta(seconds=1)
        engine = step_until(engine, lambda e: e.state == S.READY and one_process(e), STARTUP, "the restart")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(old, signal.SIGCONT)
    assert engine.pid != old and not processes.group_alive(old)
    assert starts_logged(engine) - before == 1 and one_process(engine) == [engine.pid]
    assert events(engine) == ["starting", "ready", "unhealthy", "draining", "stopped", "starting", "ready"]


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


def engine_env(settings) -> dict:
    """A glmadmin process's environment for this module's engines (the worker's, a supervisor's)."""
    return {**subprocess_env(), "GLMADMIN_ENGINE_PYTHON": settings.ENGINE_PYTHON, "GLMADMIN_ENGINE_USER": "nobody",
            "GLMADMIN_ENGINE_HOME_DIR": str(settings.ENGINE_HOME_DIR), "GLMADMIN_ENGINE_PROBE_INTERVAL": "1",
            "DJANGO_SETTINGS_MODULE": "glmadmin.settings"}


def test_the_days_restart_delivered_three_times_and_its_supervisor_killed_mid_way_leave_one_engine(
        ready, settings, tmp_path):
    engine, old, before = ready, ready.pid, starts_logged(ready)
    # Delivered twice, and a late copy within the task's expiry: one restart, claimed by the first.
    assert scheduled_restart.apply(args=[engine.pk]).get() == f"restart of {engine.name} requested"
    assert scheduled_restart.apply(args=[engine.pk]).get() == f"skipped: {engine.name} had its scheduled restart today"
    with tm.travel(timezone.now() + timedelta(minutes=20), tick=False):
        assert scheduled_restart.apply(args=[engine.pk]).get() == (
            f"skipped: {engine.name} had its scheduled restart today")
    engine.refresh_from_db()
    assert (engine.state, engine.restart_generation) == (S.DRAINING, 1)

    # The supervisor carrying out the restart dies (SIGKILL, no clean-up) when it would record the new process.
    with (tmp_path / "supervisor.log").open("w") as log:
        dying = subprocess.run([sys.executable, "-c", DYING_SUPERVISOR, str(engine.pk)], cwd=ROOT,
                               env=engine_env(settings), stdout=log, stderr=subprocess.STDOUT, timeout=300)
    assert dying.returncode == -signal.SIGKILL, (tmp_path / "supervisor.log").read_text()
    new = wait_for(lambda: [p for p in one_process(engine) if p != old], 60, "the new process")
    engine.refresh_from_db()
    assert engine.state == S.STOPPED and engine.pid is None  # the database never learnt of the new process
    assert not processes.group_alive(old)

    # The next supervisor (its predecessor's lock expires first) adopts the process, even before vLLM listens on
    # its port; one engine throughout, and the restart happened once.
    engine = step_until(engine, lambda e: e.state == S.READY and one_process(e), STARTUP, "ready again")
    assert [engine.pid] == new == one_process(engine)
    assert starts_logged(engine) - before == 1 and engine.restart_generation == 1
    assert "adopted running process" in engine.events.filter(state=S.STARTING).order_by("pk").last().reason
    assert events(engine)[-2:] == ["starting", "ready"]


# --- two beats -------------------------------------------------------------------------------------------------
# Two beats running at once (a second one started by mistake, or an old one not stopped) send every scheduled task
# twice; each effect still happens once: the daily restart restarts the engine once, the reconcile loop keeps it
# to one process, a red disk opens one incident and plans one notification. Real processes throughout, as the
# Procfile starts them: two `celery beat`, the worker (engine control) and the alerts worker, on the test's
# database and Redis. The engine's daily restart is set to the next minute once both beats run. Beat and the
# worker log nothing per task (settings: celery.beat at WARNING), so what was sent is read from the broker.

def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith("#"))


@pytest.fixture
def stack(transactional_db, tmp_path, settings):
    """start(name, log name) for the Procfile's processes; every group is stopped afterwards. Returns the log."""
    env = {**engine_env(settings), "GLMADMIN_HOST_NAME": "local"}
    logs = []
    with contextlib.ExitStack() as started:

        def start(name: str, log: str):
            logs.append(tmp_path / f"{log}.log")
            started.enter_context(process_group(["bash", "-c", procfile()[name]], logs[-1], env))
            return logs[-1]

        yield start
    rd.client().delete(*(f"{django_settings.REDIS_PREFIX}:celery:{queue}"
                         for queue in ("two-beats-probe", "engines.local", "alerts", "alerts.local")))
    for log in logs:
        print(f"{log.name}:\n{log.read_text()[-3000:]}")  # shown by pytest for a failed test


def queued(queue: str) -> list[dict]:
    """The headers of the task messages waiting in `queue` (the broker's list in Redis)."""
    return [json.loads(raw)["headers"]
            for raw in rd.client().lrange(f"{django_settings.REDIS_PREFIX}:celery:{queue}", 0, -1)]


def senders(queue: str, task: str) -> set[str]:
    """Who sent the `task` messages waiting in `queue`: Celery names each sending process (gen<pid>@host)."""
    return {headers["origin"] for headers in queued(queue) if headers["task"] == task}


def test_two_beats_send_everything_twice_and_each_effect_happens_once(ready, stack, no_default_filesystems,
                                                                      tmp_path):
    engine, before = ready, starts_logged(ready)
    # A beat row that nobody consumes shows who sends: both beats, each once a second.
    PeriodicTask.objects.create(name="Probe", task="probe", queue="two-beats-probe", interval=every_seconds(1))
    (tmp_path / "disk").mkdir()
    disk = WatchedFilesystem.objects.create(path=str(tmp_path / "disk"), label="disk", yellow_enabled=False,
                                            orange_enabled=False, red_percent=0.0, red_for_seconds=0)
    webhook("http://127.0.0.1:9/never-answered")  # planned notifications are rows; nobody delivers them here
    stack("alerts", "alerts")
    beats = {stack("beat", "beat-1"), stack("beat", "beat-2")}
    wait_for(lambda: len(senders("two-beats-probe", "probe")) == 2, 240, "both beats sending")
    assert len(beats) == 2

    # The daily restart at the next whole minute at least 20 s away. The worker that runs it is not started
    # yet, so both beats' messages are seen waiting in the host's queue first.
    at = (timezone.localtime() + timedelta(seconds=80)).replace(second=0, microsecond=0)
    engine.daily_restart_at = at.time()
    engine.save(update_fields=["daily_restart_at"])
    restart = "inference.tasks.scheduled_restart"
    wait_for(lambda: len(senders("engines.local", restart)) == 2, 240, "both beats' daily restart waiting")
    stack("worker", "worker")
    wait_for(lambda: not senders("engines.local", restart), 120, "the worker taking both deliveries")
    restarted = wait_for(lambda: Engine.objects.filter(pk=engine.pk, state=S.READY).exclude(pid=ready.pid).first(),
                         STARTUP, "the engine ready again after its restart")
    assert restarted.restart_generation == 1  # two deliveries, one restart
    assert starts_logged(engine) - before == 1 and one_process(engine) == [restarted.pid]

    # Every disk check was sent twice too: one incident, one event, one notification planned.
    wait_for(lambda: DiskSample.objects.filter(filesystem=disk).count() >= 4, 120, "several disk checks")
    incident = Incident.objects.get(source=disk.source)
    assert IncidentEvent.objects.filter(incident=incident).count() == 1
    assert Notification.objects.filter(incident=incident).count() == 1
