"""Child processes that share the test's database and Redis: manage.py commands, servers."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from django.conf import settings
from django.db import connection

from glmadmin.lib import runas

ROOT = Path(__file__).resolve().parents[2]


def subprocess_env() -> dict:
    """Environment for a child process that must share this test's database and Redis."""
    env = dict(os.environ)
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    env["REDIS_URL"] = settings.REDIS_URL
    env["GLMADMIN_REDIS_PREFIX"] = settings.REDIS_PREFIX
    env["GLMADMIN_DATA_DIR"] = str(settings.DATA_DIR)
    return env


def manage(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run manage.py in a separate process, as an operator would from a shell. The bound is generous: an engine
    restart on a loaded 2-core CI machine can take minutes (the commands take their own --timeout)."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600, check=check)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def uvicorn(log_path: Path, env: dict | None = None, port: int | None = None):
    """The real ASGI server in its own process; yields (base URL, process) once it answers."""
    port = port or free_port()
    # Its output goes to a file, not a pipe: nobody reads a pipe while the test runs, and a server that
    # has logged 64 KB into a full pipe blocks in its next log line.
    with log_path.open("a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "glmadmin.asgi:application", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log"],
            cwd=ROOT, env=env or subprocess_env(), stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    # Generous: on a loaded 2-core CI machine the server's imports alone once took over a minute.
    deadline = time.monotonic() + 180
    while True:  # poll until the server answers; that is the readiness signal
        try:
            httpx.get(f"{base}/login/", timeout=5)
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"uvicorn did not start:\n{log_path.read_text()}") from None
            time.sleep(0.1)
    try:
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_for(condition, timeout: float, what: str, pace: float = 0.1):
    """Poll `condition` until it returns something true (returned), failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} not seen in {timeout} s"
        time.sleep(pace)  # the pace of polling real processes and files, not a wait for an event
    return result


@contextlib.contextmanager
def process_group(argv: list[str], log_path: Path, env: dict | None = None):
    """A command in its own session, output to a file; its whole group is stopped (TERM, then KILL) after."""
    with log_path.open("a") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env or subprocess_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def python_for(user, python: Path, where: Path) -> Path:
    """A virtualenv's python that `user` (glmadmin.lib.runas.User) can run: `python` itself where it can, else a
    view of that virtualenv on the system's Python of the same minor version, made in `where` (its packages,
    through a symlink). Here and in CI the virtualenvs come from a Python under /root (pyenv, mode 0700), which
    another user cannot run; the packages, vLLM's included, are the installed ones either way."""
    if runas.closed_to(user, python) is None:
        return python
    site = next((python.parent.parent / "lib").glob("python3.*/site-packages"))
    system = Path("/usr/bin") / site.parent.name
    assert runas.closed_to(user, system) is None, f"no {system} that {user.name} can run for a view of {python}"
    view = where / f"{python.parent.parent.name}-for-{user.name}"
    (view / "bin").mkdir(parents=True, exist_ok=True)
    (view / "lib" / site.parent.name).mkdir(parents=True, exist_ok=True)
    for link, target in ((view / "bin" / "python", system), (view / "lib" / site.parent.name / "site-packages", site)):
        if not link.is_symlink():
            link.symlink_to(target)
    (view / "pyvenv.cfg").write_text(f"home = {system.parent}\ninclude-system-site-packages = false\n")
    assert runas.closed_to(user, view / "bin" / "python") is None, f"{where} is closed to {user.name}"
    return view / "bin" / "python"


@contextlib.contextmanager
def open_tmp_dir(prefix: str):
    """A temporary directory another user (nobody) can enter: pytest's tmp_path is under root's own, 0700."""
    where = Path(tempfile.mkdtemp(prefix=prefix))
    where.chmod(0o755)
    try:
        yield where
    finally:
        shutil.rmtree(where)
