"""Real files in a temporary tree, with ages set by os.utime against a clock moved by time-machine.

Files get a ctime of "now" from the kernel; tests move the clock DAYS ahead
so the ctime counts as old and each file's age is decided by the mtime set here.
"""

import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from monitoring.models import CleanupPolicy

DAYS = 10  # beyond the default minimum age (7 days), within the session lifetime (14 days)


def future_now() -> float:
    return time.time() + DAYS * 86400


def make_file(root: Path, relpath: str, *, size: int = 4096, age_hours: float, now: float) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    stamp = now - age_hours * 3600
    os.utime(path, (stamp, stamp))
    return path


def policy(root: Path, **fields) -> CleanupPolicy:
    values = {"name": "cache", "root": str(root), "max_size": "0", "min_age_hours": 168}
    values.update(fields)
    return CleanupPolicy.objects.create(**values)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def without_default_policies() -> None:
    """The migration adds a policy for this machine's real ~/.cache/vllm: tests must never clean it."""
    from monitoring.models import LogPolicy

    CleanupPolicy.objects.all().delete()
    LogPolicy.objects.all().delete()


@contextmanager
def mounted(*args: str, target: Path):
    """`mount ARGS TARGET` for the block, unmounted after; skips the test where mounting needs root we lack."""
    result = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"cannot mount here (needs root): {result.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def make_raw(root: Path, name: bytes, *, size: int = 4096, age_hours: float, now: float) -> bytes:
    """A file whose name is raw bytes (not UTF-8, a newline, control characters); returns its full path."""
    path = os.path.join(os.fsencode(root), name)
    with open(path, "wb") as fh:
        fh.write(b"x" * size)
    stamp = now - age_hours * 3600
    os.utime(path, (stamp, stamp))
    return path
