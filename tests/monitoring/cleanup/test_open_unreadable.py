"""When the open-file check cannot read every process, no file that may be open is removed, and the run says so.

A process of another user (nobody) holds old files open; the cleanup runs in a worker without CAP_SYS_PTRACE,
the position of a glmadmin that does not run as root: the kernel refuses it that process's /proc/PID/fd and
maps. Real processes, real capabilities (setpriv); the holder says when it holds its files.
"""

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from monitoring.models import CleanupRun
from tests.support.cleanup import make_file, policy, tree
from tests.support.processes import ROOT, subprocess_env

pytestmark = [pytest.mark.privileged, pytest.mark.django_db(transaction=True)]
NOBODY = 65534
HOLDER = f"""
import os, sys
held = [open(path, "rb") for path in sys.argv[1:]]
os.setgroups([])
os.setresgid({NOBODY}, {NOBODY}, {NOBODY})
os.setresuid({NOBODY}, {NOBODY}, {NOBODY})
print("holding", flush=True)
sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def needs_root_and_setpriv():
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to run a process as nobody) and setpriv (to run a worker without CAP_SYS_PTRACE)")


@contextmanager
def held_by_nobody(*paths):
    """A process running as nobody that holds paths open until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, paths)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "holding\n"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def clean_cache_without(*capabilities: str) -> subprocess.CompletedProcess:
    """manage.py clean_cache in a worker that lacks the given capabilities (its children lack them too)."""
    drop = ",".join(f"-{c}" for c in capabilities)
    return subprocess.run(["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", "--", sys.executable,
                           "manage.py", "clean_cache", "--policy", "cache"],
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=120, check=True)


def old_files(root, *names):
    # Another process: time-machine cannot move its clock, so the minimum age is 0 and every file is old.
    return [make_file(root, name, age_hours=1, now=time.time()) for name in names]


def test_a_file_held_open_by_a_process_we_cannot_read_is_kept(tmp_path):
    held, free = old_files(tmp_path, "held.bin", "free.bin")
    policy(tmp_path, min_age_hours=0)
    with held_by_nobody(held):
        result = clean_cache_without("sys_ptrace")
    assert tree(tmp_path) == {"held.bin"}
    run = CleanupRun.objects.get()
    assert run.skipped == {"open": 1} and run.files_removed == 1
    # Said in the record, the command's output and the notes (which processes, and what was done instead).
    assert "the open-file check could not read" in run.message and "could not read" in result.stdout
    assert run.notes[0][0].startswith("process ") and all("asked of the kernel" in why for _, why in run.notes)


def test_a_file_the_kernel_cannot_be_asked_about_is_kept_while_a_process_cannot_be_read(tmp_path):
    held, foreign, ours = old_files(tmp_path, "held.bin", "foreign.bin", "ours.bin")
    os.chown(foreign, NOBODY, NOBODY)  # a lease on another user's file needs CAP_LEASE, which the worker lacks
    policy(tmp_path, min_age_hours=0)
    with held_by_nobody(held):
        clean_cache_without("sys_ptrace", "lease")
    assert tree(tmp_path) == {"held.bin", "foreign.bin"}
    assert CleanupRun.objects.get().skipped == {"open": 1, "open_unknown": 1}
