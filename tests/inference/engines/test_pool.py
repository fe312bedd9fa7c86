"""The engine pool with real vLLM (CPU build) serving the generated demo model.

One engine is shared by the tests of this module, in order: starting costs
about 30-45 s here. Rows are committed (not rolled back) so that the
management commands run as separate processes see them.
"""

import json
import os
import signal
import threading

import httpx
import psutil
import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from alerts.models import Incident
from glmadmin.lib import processes
from inference import demo, engine_client, remedy, supervisor
from inference.gateway import routing
from inference.models import Engine
from inference.models import EngineState as S
from tests.inference.engines.test_engine_environment import SECRETS, assert_no_secrets, environ
from tests.support.browser import PASSWORD, chromium, signed_in
from tests.support.engines import engine_processes, events, require_runtime, step_until
from tests.support.processes import manage

PORT = 8131
STARTUP = 240


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    require_runtime()
    return demo.make_model(tmp_path_factory.mktemp("models") / "demo")


@pytest.fixture(scope="module", autouse=True)
def no_engine_left_behind():
    yield
    for proc in engine_processes(PORT) + engine_processes(PORT + 1) + engine_processes(PORT + 2):
        segments = processes.shared_memory(proc.pid)
        processes.kill_group(proc.pid)
        processes.remove_shared_memory(segments)


@pytest.fixture
def engine(transactional_db, demo_model):
    """The pool's engine row. Rows do not outlive a test, the process does: each test's new row
    finds the running engine on its port and adopts it, which is itself what a supervisor must do."""
    # Development mode (which glmadmin sets with sleep mode; the CPU build has none) for the remedy's prefix
    # cache reset, tested here on the same engine rather than on one more engine start.
    return Engine.objects.create(name="pool-a", port=PORT, model=str(demo_model), served_model_name="demo-a",
                                 enforce_eager=True, shutdown_timeout=10, extra_args=demo.ENGINE_ARGS,
                                 env={"VLLM_SERVER_DEV_MODE": "1"})


@pytest.fixture
def ready(engine):
    return step_until(engine, lambda e: e.state == S.READY, STARTUP, "ready")


def test_start_then_ready_then_a_real_completion(engine, capsys, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)  # the worker's secrets: no engine gets them
    call_command("start_engine", "pool-a", "--timeout", str(STARTUP))
    assert "pool-a: ready" in capsys.readouterr().out
    engine.refresh_from_db()
    assert engine.state == S.READY and engine.last_probe_ms is not None
    response = httpx.post(f"http://127.0.0.1:{PORT}/v1/completions",
                          json={"model": "demo-a", "prompt": "hello", "max_tokens": 5}, timeout=30)
    assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] == 5
    # Bound to loopback only: users reach engines through the gateway.
    listening = {c.laddr.ip for c in psutil.Process(engine.pid).net_connections() if c.status == "LISTEN"}
    assert listening == {"127.0.0.1"}
    assert events(engine)[-2:] == ["starting", "ready"]
    # The engine and its workers (EngineCore...) started from a scrubbed environment.
    for proc in processes.group_members(engine.pid):
        assert_no_secrets(environ(proc.pid))


def test_engine_status_table(ready):
    engine = ready
    result = manage("engine_status")
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "HOST", "STATE", "PID", "PORT"]
    engine.refresh_from_db()
    assert row.split()[:5] == ["pool-a", "local", "ready", str(engine.pid), str(PORT)]


def test_the_prefix_cache_is_reset_on_a_real_engine(ready):
    """The remedy ladder's first step against the real vLLM: POST /reset_prefix_cache, one of its development
    endpoints, answers success and the engine serves on. The refusals and the rest of the ladder are tested
    against the sleep responder (tests/monitoring/telemetry/rules/test_remedy.py)."""
    engine = ready
    assert engine_client.generate_one_token(engine).ok  # something in the cache
    taken = remedy.reset_prefix_cache(engine)
    assert taken.done and taken.step == remedy.PREFIX_CACHE, taken.note
    assert taken.note.startswith("prefix cache reset in ")
    assert engine_client.generate_one_token(engine).ok  # and it serves on


# What the dashboard shows of pool-a in its overview row and in its engine card, recorded in the page after every
# change to the page (a live update swaps all cards in one task, so each record is one update's picture).
RECORD_ENGINE_CARDS = """() => {
  const shown = (card) => {
    const el = document.querySelector(card);
    if (!el) return null;
    const text = (field) => el.querySelector(`[data-engine-${field}]`).textContent.trim();
    return [el.querySelector("[data-engine-state]").dataset.engineState, text("pid"), text("up"), text("probe")];
  };
  window.engineCards = [];
  const record = () => {
    const now = JSON.stringify([shown('[data-overview-engine="pool-a"]'), shown('#engines [data-engine="pool-a"]')]);
    if (now !== window.engineCards[window.engineCards.length - 1]) window.engineCards.push(now);
  };
  record();
  new MutationObserver(record).observe(document.body, {childList: true, subtree: true, attributes: true,
                                                       characterData: true});
}"""


def test_restart_engine_command_end_to_end_under_an_open_dashboard(ready, server, django_user_model):
    """One restart for three (an engine start is this module's costliest step): `--soft` on vLLM's CPU build is
    the full restart (drain, stop, start) with the reason said first; and a dashboard left open (issue 17)
    follows it card by card without a reload, its overview and engine card never contradicting each other."""
    engine = ready
    django_user_model.objects.create_superuser("ops", password=PASSWORD)
    Engine.objects.filter(pk=engine.pk).update(soft_restart=True)
    engine.refresh_from_db()
    old_pid = engine.pid
    old_segments = processes.shared_memory(old_pid)
    assert old_segments  # vLLM's message queues
    with chromium() as browser:
        page = signed_in(browser, server, "ops")
        page.evaluate(RECORD_ENGINE_CARDS)
        result = manage("restart_engine", "pool-a", "--soft", "--timeout", str(STARTUP))
        # The command returns at ready; the page hears of it over the websocket just after.
        expect(page.locator('#engines [data-engine="pool-a"] [data-engine-pid]')).not_to_have_text(str(old_pid))
        expect(page.locator('#engines [data-engine="pool-a"] [data-engine-state]')).to_have_attribute(
            "data-engine-state", S.READY)
        pictures = [json.loads(each) for each in page.evaluate("window.engineCards")]
        reloaded = page.evaluate("window.loadedOnce") is not True
    lines = result.stdout.splitlines()
    assert lines[0] == ("pool-a: soft restart not possible: this host's engine runtime has no sleep mode (vLLM's "
                        "CPU build; sleep mode needs CUDA); full restart"), result.stdout
    states = [line.split(": ")[1].split()[0] for line in lines[1:] if "pool-a: " in line]
    assert states == ["draining", "stopped", "starting", "ready"], result.stdout
    assert lines[-1] == "ready: pool-a"
    engine.refresh_from_db()
    assert engine.state == S.READY and engine.pid != old_pid and engine.restarts >= 1
    assert engine.soft_restarts == 0
    assert processes.group_members(old_pid) == []  # nothing of the old engine is left
    assert [p.pid for p in engine_processes(PORT)] == [engine.pid]
    assert [path for path in old_segments if os.path.exists(path)] == []
    # Started without the flag vLLM's CPU build refuses, although soft restarts are allowed for it.
    assert "--enable-sleep-mode" not in psutil.Process(engine.pid).cmdline()

    # The open dashboard: every picture it showed had the overview and the engine card saying the same; uptime
    # and probe only while ready (the old run's would contradict the state); it went from the old pid through
    # the restart to the new one, the last picture being the database's; and it never reloaded.
    print("pictures:", pictures)
    assert not reloaded
    for overview, card in pictures:
        assert overview == card, (overview, card)
        state, _, up, probe = card
        assert (up != "–" and probe != "–") if state == S.READY else (up, probe) == ("–", "–"), card
    shown = [(card[0], card[1]) for _, card in pictures]
    steps = [each for i, each in enumerate(shown) if i == 0 or shown[i - 1] != each]
    old, new = str(old_pid), str(engine.pid)
    order = iter([(S.READY, old), (S.DRAINING, old), (S.STOPPED, "–"), (S.STARTING, new), (S.READY, new)])
    assert all(step in order for step in steps), steps  # in this order, none other; a quick one may be missed
    assert steps[0] == (S.READY, old) and (S.STARTING, new) in steps and steps[-1] == (S.READY, new), steps


def test_restart_of_unknown_engine_fails_with_one_line(engine):
    result = manage("restart_engine", "nope", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["CommandError: unknown engine 'nope' (engines: pool-a)"]


def test_supervisor_restart_adopts_the_running_engine(ready):
    engine = ready
    engine.refresh_from_db()
    pid = engine.pid
    # A fresh process (as after a worker restart) steps the supervisor: it finds the engine, starts nothing.
    manage("shell", "-c", "from inference.supervisor import reconcile_host; reconcile_host()")
    engine.refresh_from_db()
    assert (engine.state, engine.pid) == (S.READY, pid)
    # Even with its record lost, the process on the port is recognised as ours and adopted, not duplicated.
    Engine.objects.filter(pk=engine.pk).update(state=S.STOPPED, pid=None, process_started_at=None)
    engine = step_until(engine, lambda e: e.state == S.READY, STARTUP, "ready after adoption")
    assert engine.pid == pid
    assert [p.pid for p in engine_processes(PORT)] == [pid]


def test_killed_engine_core_is_detected_and_restarted(ready, settings):
    engine = ready
    settings.ENGINE_BACKOFF_SECONDS = 1
    engine.refresh_from_db()
    old_pid = engine.pid
    old_segments = processes.shared_memory(old_pid)
    core = next(p for p in processes.group_members(old_pid) if "EngineCore" in " ".join(p.cmdline()))
    core.send_signal(signal.SIGKILL)
    engine = step_until(engine, lambda e: e.state == S.READY and e.pid != old_pid, STARTUP, "restarted after kill -9")
    assert S.BACKOFF in events(engine)[-3:] or S.UNHEALTHY in events(engine)[-4:]
    assert processes.group_members(old_pid) == []
    # A crashed engine's shared memory (hundreds of MB) does not pile up in /dev/shm.
    assert [path for path in old_segments if os.path.exists(path)] == []


def test_two_reconciles_at_once_start_one_process(ready):
    engine = ready
    call_command("stop_engine", "pool-a", "--timeout", "120")
    Engine.objects.filter(pk=engine.pk).update(enabled=True)
    engine.refresh_from_db()
    barrier = threading.Barrier(2)

    def step_without_lock():
        # Below the lock, as if it had expired: the database claim alone must prevent a second engine.
        stale = Engine.objects.get(pk=engine.pk)
        barrier.wait()
        supervisor._step(stale)

    threads = [threading.Thread(target=step_without_lock) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine = step_until(engine, lambda e: e.state == S.READY, STARTUP, "ready")
    assert [p.pid for p in engine_processes(PORT)] == [engine.pid]
    assert events(engine)[-2:] == ["starting", "ready"]


def test_stop_leaves_no_process_and_frees_the_port(ready):
    engine = ready
    engine.refresh_from_db()
    pid = engine.pid
    result = manage("stop_engine", "pool-a")
    assert result.stdout.splitlines()[-1] == "stopped: pool-a"
    engine.refresh_from_db()
    assert (engine.state, engine.pid, engine.enabled) == (S.STOPPED, None, False)
    assert processes.group_members(pid) == []
    assert engine_processes(PORT) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{PORT}/health", timeout=2)


def test_bad_model_path_backs_off_then_fails_with_an_incident(transactional_db, demo_model, settings, tmp_path):
    settings.ENGINE_BACKOFF_SECONDS = 1
    broken = Engine.objects.create(name="broken", port=PORT + 1, model=str(tmp_path / "no-such-model"),
                                   served_model_name="broken", enforce_eager=True)
    broken = step_until(broken, lambda e: e.state == S.FAILED, 400, "failed")
    assert events(broken).count(S.BACKOFF) == 2 and events(broken)[-1] == S.FAILED
    assert "3 failures within 10 min" in broken.state_reason
    incident = Incident.objects.open().get(source="engine:local:broken")
    assert (incident.kind, incident.level) == ("engine", "orange")
    # It stays down until an operator acts.
    supervisor.reconcile(broken.pk)
    broken.refresh_from_db()
    assert broken.state == S.FAILED and engine_processes(PORT + 1) == []


def test_port_change_applies_at_the_restart(ready, settings):
    """Issue 15: the gateway went to an edited port at once, while the process listened on the old one."""
    settings.ENGINE_PROBE_INTERVAL = 1
    engine, new = ready, PORT + 2
    Engine.objects.filter(pk=engine.pk).update(port=new)  # the admin's edit
    engine.refresh_from_db()
    probed = engine.last_probe_at
    engine = step_until(engine, lambda e: e.last_probe_at != probed, 60, "the next liveness probe")
    assert (engine.state, engine.probe_failures) == (S.READY, 0)  # probed where it listens
    url = routing.table()["pool-a"]["url"]
    assert url == f"http://127.0.0.1:{PORT}"
    response = httpx.post(f"{url}/v1/completions", json={"model": "demo-a", "prompt": "hi", "max_tokens": 2},
                          timeout=30)
    assert response.status_code == 200
    assert f"pool-a: restart to apply: port {PORT} → {new}" in manage("engine_status").stdout
    manage("restart_engine", "pool-a", "--timeout", str(STARTUP))
    engine.refresh_from_db()
    assert (engine.state, engine.pending_restart(), engine.base_url) == (S.READY, [], f"http://127.0.0.1:{new}")
    response = httpx.post(f"http://127.0.0.1:{new}/v1/completions",
                          json={"model": "demo-a", "prompt": "hi", "max_tokens": 2}, timeout=30)
    assert response.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{PORT}/health", timeout=2)
    manage("stop_engine", "pool-a")
