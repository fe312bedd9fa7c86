"""What the benchmarks share: a scratch glmadmin (SQLite + private Redis) and the demo model."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


class Scratch:
    """A throwaway glmadmin installation: its own data dir, SQLite database and Redis."""

    def __init__(self, name: str):
        self.dir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.env = dict(os.environ, GLMADMIN_DATA_DIR=str(self.dir), REDIS_URL=f"unix://{self.dir}/redis.sock",
                        GLMADMIN_LOG_LEVEL="WARNING", DJANGO_SETTINGS_MODULE="glmadmin.settings")
        self.env.pop("DATABASE_URL", None)
        self.redis = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", f"{self.dir}/redis.sock", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL)
        os.environ.update(self.env)  # this process uses the scratch install too (ORM, supervisor)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        self.manage("migrate", "--noinput")

    def manage(self, *args, check=True) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=self.env, check=check, capture_output=True,
                              text=True)

    def demo_model(self) -> Path:
        from inference import demo

        return demo.make_model(self.dir / "model")

    def close(self):
        self.redis.terminate()


def wait_http(url: str, timeout: float = 300) -> float:
    """Seconds until url answers 200 (polled every 50 ms)."""
    import httpx

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(url)


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def procfile(skip: tuple[str, ...] = ("redis",)) -> dict[str, str]:
    """The Procfile's processes (name -> command line), as scripts/run starts them; Scratch brings the Redis."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#") and name.strip() not in skip:
            commands[name.strip()] = command.strip()
    return commands


def spawn_procfile(scratch: Scratch, env: dict, skip: tuple[str, ...] = ("redis",),
                   only: tuple[str, ...] | None = None) -> dict[str, subprocess.Popen]:
    """Start the Procfile's processes (or `only` those) on the scratch install (GLMADMIN_HOST/PORT/HOST_NAME taken
    from env), each logging to <scratch>/<name>.log; exec'd by bash, so terminating one ends the process itself."""
    started = {}
    for name, command in procfile(skip).items():
        if only is not None and name not in only:
            continue
        log = open(scratch.dir / f"{name}.log", "a")
        started[name] = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=env, stdout=log,
                                         stderr=subprocess.STDOUT)
    return started


def restart_celery_worker(scratch: Scratch, env: dict, procs: dict[str, subprocess.Popen], name: str,
                          timeout: float = 120) -> None:
    """Stop the Procfile's Celery worker `name` of `procs` and start it again with `env`; returns once it
    consumes (celery logs "<name>@<host> ready.")."""
    proc = procs.pop(name)
    proc.terminate()
    proc.wait(timeout=60)
    log = scratch.dir / f"{name}.log"
    seen = log.read_text().count(" ready.")
    procs.update(spawn_procfile(scratch, env, only=(name,)))
    deadline = time.monotonic() + timeout
    while log.read_text().count(" ready.") <= seen:
        if time.monotonic() > deadline:
            raise SystemExit(f"the {name} worker did not start again; see {log}")
        time.sleep(0.2)  # the pace of polling a starting worker's log
