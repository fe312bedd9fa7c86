"""`scripts/run` as an operator starts it: a process that dies is restarted, the others stay up.

The whole embedded stack (private Redis, web, three workers, beat under supervisord) on a scratch
SQLite database; the test kills Redis with SIGKILL, as a crash or the OOM killer would.
"""

import os
import signal
import sqlite3
from datetime import UTC, datetime

import httpx
import psutil
import pytest

from tests.support.processes import free_port, process_group, wait_for

SUPERVISED = {"web", "worker", "alerts", "notify", "beat"}


def processes_under(data_dir) -> dict[str, psutil.Process]:
    """The stack's processes, by role, found by the data directory on their command lines or environment."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "redis-server" in cmdline and str(data_dir) in cmdline:  # it shows "unixsocket:<path>" once up
            found["redis"] = proc
            continue
        try:
            if proc.environ().get("GLMADMIN_DATA_DIR") != str(data_dir):
                continue
        except psutil.Error:
            continue
        for role in SUPERVISED:
            if (role == "web" and "uvicorn" in cmdline) or f"-n {role}@" in cmdline or (
                    role == "beat" and " beat " in f"{cmdline} "):
                if role not in found or proc.pid < found[role].pid:  # the main process, not pool children
                    found[role] = proc
    return found


def last_disk_check(database) -> datetime | None:
    with sqlite3.connect(database) as db:
        row = db.execute("select max(last_checked_at) from monitoring_watchedfilesystem").fetchone()
    return datetime.fromisoformat(row[0]).replace(tzinfo=UTC) if row and row[0] else None


@pytest.fixture
def stack(tmp_path):
    data_dir, port = tmp_path / "data", free_port()
    # The demo engine is defined as on a first run, from a cached model that is a stand-in (the real one is
    # tests/inference/chat/test_meaning.py's), and never runs here: its runtime is /bin/false.
    cached = tmp_path / "cache" / "glmadmin" / "models" / "SmolLM2-135M-Instruct"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    (cached / "DEMO_MODEL.json").write_text('{"what": "a stand-in"}')
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(GLMADMIN_DATA_DIR=str(data_dir), GLMADMIN_PORT=str(port), XDG_CACHE_HOME=str(tmp_path / "cache"),
               GLMADMIN_ENGINE_PYTHON="/bin/false",
               GLMADMIN_ADMIN_PASSWORD="pw-embedded-run-1", GLMADMIN_REDIS_PREFIX="embedded")
    log = tmp_path / "run.log"
    with process_group(["scripts/run"], log, env) as run:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/login/"), 300, f"the web server:\n{log.read_text()}",
                 pace=0.2)
        yield data_dir, f"http://127.0.0.1:{port}", run
    print(f"scripts/run's output:\n{log.read_text()[-6000:]}")  # shown by pytest for a failed test


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_a_killed_redis_is_restarted_and_the_rest_keeps_running(stack):
    data_dir, base, run = stack

    def all_running():
        found = processes_under(data_dir)
        return found if set(found) >= SUPERVISED | {"redis"} else None

    before = wait_for(all_running, 60, "every process of the stack", pace=0.2)
    log = data_dir.parent / "run.log"
    # Every process's lines say whose they are (and they all have written some by now or soon).
    wait_for(lambda: all(f"\n{role:<6} | " in log.read_text() for role in SUPERVISED | {"redis"}), 120,
             "a line of each process, prefixed with its name", pace=0.2)
    wait_for(lambda: "\ndemo   | demo engine 'demo' defined" in log.read_text(), 120, "the demo engine", pace=0.2)
    output = log.read_text()
    # Defined once the private Redis runs: its route is written there, not lost with a warning.
    assert "not written to Redis" not in output, output
    assert "GLMADMIN_PORT sets the port" in output
    database = data_dir / "glmadmin.sqlite3"
    wait_for(lambda: last_disk_check(database), 60, "a first disk check", pace=0.2)

    os.kill(before["redis"].pid, signal.SIGKILL)
    killed_at = datetime.now(UTC)

    def new_redis():
        found = all_running()
        return found if found and found["redis"].pid != before["redis"].pid else None

    after = wait_for(new_redis, 60, "a new Redis", pace=0.2)

    for role in SUPERVISED:  # nobody else was restarted, nobody stopped
        assert after[role].pid == before[role].pid and after[role].is_running(), role
    # The workers and beat found the new Redis: disk checks (beat -> alerts lane -> database) go on.
    wait_for(lambda: (last_disk_check(database) or killed_at) > killed_at, 90, "a disk check after the restart",
             pace=0.2)
    assert _answers(f"{base}/login/")

    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C stops everything, engines aside
    assert run.wait(timeout=60) == 0
    assert processes_under(data_dir) == {}
