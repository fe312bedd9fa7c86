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
