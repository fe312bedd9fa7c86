"""Child processes that share the test's database and Redis: manage.py commands, servers."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.db import connection

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
    """Run manage.py in a separate process, as an operator would from a shell."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=120, check=check)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
