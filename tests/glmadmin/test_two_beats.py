"""Two beats running at once (a second one started by mistake, or an old one not stopped) send every
scheduled task twice; each effect still happens once: the daily restart restarts the engine once, the
reconcile loop keeps it to one process, a red disk opens one incident and plans one notification.

Real processes throughout, as the Procfile starts them: two `celery beat`, the worker (engine control) and the
alerts worker, on the test's database and Redis. The engine is a process the supervisor manages (the stand-in
runtime tests/support/slow_engine.py); its daily restart is set to the next minute once both beats run. Beat
and the worker log nothing per task (settings: celery.beat at WARNING), so what was sent is read from the broker.
"""

import contextlib
import json
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from alerts.models import Incident, IncidentEvent, Notification
from glmadmin.lib import redis as rd
from glmadmin.schedules import every_seconds
from inference.models import Engine
from inference.models import EngineState as S
from monitoring.models import DiskSample, WatchedFilesystem
from tests.inference.engines import slow_engines
from tests.support.engines import starts, step_until
from tests.support.notify import webhook
from tests.support.processes import ROOT, process_group, subprocess_env, wait_for

slow_engine = slow_engines.slow_engine  # a fixture: engines the supervisor manages, whose model loads at once here
ours = slow_engines.ours


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith("#"))


@pytest.fixture
def stack(slow_engine, transactional_db, tmp_path, settings):  # the engine runtime is set first
    """start(name, log name) for the Procfile's processes; every group is stopped afterwards. Returns the log."""
    env = {**subprocess_env(), "GLMADMIN_HOST_NAME": "local", "GLMADMIN_ENGINE_PYTHON": settings.ENGINE_PYTHON}
    logs = []
    with contextlib.ExitStack() as processes:

        def start(name: str, log: str):
            logs.append(tmp_path / f"{log}.log")
            processes.enter_context(process_group(["bash", "-c", procfile()[name]], logs[-1], env))
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


def test_two_beats_send_everything_twice_and_each_effect_happens_once(slow_engine, stack, no_default_filesystems,
                                                                      tmp_path):
    # A beat row that nobody consumes shows who sends: both beats, each once a second.
    PeriodicTask.objects.create(name="Probe", task="probe", queue="two-beats-probe", interval=every_seconds(1))
    engine, model = slow_engine()
    (model / "loaded").touch()
    ready = step_until(engine, lambda e: e.state == S.READY, 120, "the engine ready")
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
                         180, "the engine ready again after its restart")
    assert restarted.restart_generation == 1  # two deliveries, one restart
    assert len(starts(model)) == 2 and [p.pid for p in ours(engine, model)] == [restarted.pid]

    # Every disk check was sent twice too: one incident, one event, one notification planned.
    wait_for(lambda: DiskSample.objects.filter(filesystem=disk).count() >= 4, 120, "several disk checks")
    incident = Incident.objects.get(source=disk.source)
    assert IncidentEvent.objects.filter(incident=incident).count() == 1
    assert Notification.objects.filter(incident=incident).count() == 1
