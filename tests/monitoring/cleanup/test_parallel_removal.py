"""Removal in two threads (large runs) keeps every guarantee of the one-thread removal, and the mount id read
with statx is the kernel table's. Real files, real leases, a real bind mount."""

import os
import threading

import pytest

from glmadmin.lib import mounts, openfiles, safewalk
from monitoring.cleanup.run import run_policy
from monitoring.models import CleanupRun
from tests.support.cleanup import future_now, make_file, mounted, policy, tree

OLD = 200  # hours: over the minimum age, under the ctime age the clock gives (cleanup_support.DAYS)


@pytest.fixture
def now(time_machine):
    stamp = future_now()
    time_machine.move_to(stamp, tick=False)
    return stamp


@pytest.fixture
def threaded(monkeypatch):
    """Every run removes in safewalk.THREADS threads, however few its files; the threads that open the root
    for removal (each its own Remover) are counted."""
    monkeypatch.setattr(safewalk, "PARALLEL_FROM", 1)
    seen = set()
    enter = safewalk.Remover.__enter__

    def counted(self):
        seen.add(threading.get_ident())
        return enter(self)

    monkeypatch.setattr(safewalk.Remover, "__enter__", counted)
    return seen


def many(root, now, dirs=8, per_dir=5):
    names = {f"d{d}/f{i}" for d in range(dirs) for i in range(per_dir)}
    for n, name in enumerate(sorted(names)):
        make_file(root, name, age_hours=OLD + n, now=now)
    return names


@pytest.mark.django_db
def test_two_threads_remove_what_one_thread_removes(tmp_path, now, threaded):
    one, two = tmp_path / "one", tmp_path / "two"
    many(one, now)
    many(two, now)
    make_file(one, "d0/young", age_hours=1, now=now)
    make_file(two, "d0/young", age_hours=1, now=now)
    first = run_policy(policy(one, name="one"), trigger=CleanupRun.Trigger.COMMAND)
    assert len(threaded) == safewalk.THREADS == 2  # threads that opened the root for removal
    threaded.clear()
    # A limit that needs only the oldest half: chosen oldest first, removed directory by directory.
    second = run_policy(policy(two, name="two", max_size=str(21 * 4096)), trigger=CleanupRun.Trigger.COMMAND)
    assert tree(one) == {"d0/young"}
    assert first.files_removed == 40 and first.errors == [] and first.skipped == {"too_young": 1}
    assert second.files_removed == 20 and second.status == CleanupRun.Status.DONE
    assert tree(two) == {"d0/young"} | {f"d{d}/f{i}" for d in range(4) for i in range(5)}  # the newest 20


@pytest.mark.django_db
def test_a_file_opened_after_the_plan_is_kept_by_its_thread(tmp_path, now, threaded, monkeypatch):
    names = many(tmp_path, now)
    # The /proc check sees nothing (as for a process in another container): only the kernel's lease can tell.
    monkeypatch.setattr(openfiles, "open_inodes", lambda: openfiles.OpenFiles())
    held = [os.open(tmp_path / "d3" / "f2", os.O_RDONLY), os.open(tmp_path / "d6" / "f0", os.O_RDONLY)]
    try:
        run = run_policy(policy(tmp_path), trigger=CleanupRun.Trigger.COMMAND)
    finally:
        for fd in held:
            os.close(fd)
    assert tree(tmp_path) == {"d3/f2", "d6/f0"}
    assert run.files_removed == len(names) - 2 and run.skipped == {"open": 2}


@pytest.mark.django_db
def test_directories_swapped_for_symlinks_mid_run_lead_neither_thread_outside(tmp_path, now, threaded):
    root, outside = tmp_path / "root", tmp_path / "outside"
    names = many(root, now)
    for name in names:
        make_file(outside, name, age_hours=OLD, now=now)
    swapped, lock = [], threading.Lock()

    def swap(relpath):
        # At the first unlink, from whichever thread: every directory becomes a symlink to its twin outside.
        with lock:
            if swapped:
                return
            for d in range(8):
                os.rename(root / f"d{d}", root / f"d{d}.moved")
                (root / f"d{d}").symlink_to(outside / f"d{d}")
                swapped.append(f"d{d}")

    run = run_policy(policy(root), trigger=CleanupRun.Trigger.COMMAND, hook=swap)
    assert tree(outside) == names  # nothing outside the root was removed
    # Each thread had at most its one directory open when they moved: only those lose files; every other
    # directory is refused (a symlink now), each of its files an error.
    gone = {name for name, _ in run.removed}
    assert 1 <= len({name.split("/")[0] for name in gone}) <= safewalk.THREADS
    assert {path for path, _ in run.errors} == names - gone
    left = {name.replace("/", ".moved/", 1) for name in names - gone}
    assert {p for p in tree(root) if ".moved/" in p} == left


@pytest.mark.privileged
def test_the_mount_id_from_statx_is_the_mount_tables(tmp_path):
    assert mounts._statx is not None, "statx() missing from this libc: mount ids come from /proc (slower)"
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    with mounted("--bind", str(tmp_path / "src"), target=tmp_path / "dst"):
        ids = {m.point: m.mount_id for m in mounts.table()}
        for path in ("/", "/proc", str(tmp_path / "dst")):
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                assert mounts.mount_id(fd) == mounts._fdinfo_mount_id(fd) == ids[path]
            finally:
                os.close(fd)


class Interrupted(Exception):
    """What a task's time limit raises in the caller's thread (Celery's SoftTimeLimitExceeded) while it joins."""


@pytest.mark.django_db
def test_an_interrupted_run_stops_its_threads_before_it_ends(tmp_path, now, threaded, monkeypatch):
    """The run (and its root's lock) must not end while its threads remove on: once the caller is interrupted,
    each thread finishes the directory it is in and takes no other."""
    names = many(tmp_path, now)
    arrived, release, joins, seen = threading.Barrier(safewalk.THREADS + 1, timeout=60), threading.Event(), [], set()

    def hold(relpath):
        # Every thread waits at its first file until the caller is interrupted (then goes on).
        if threading.get_ident() not in seen:
            seen.add(threading.get_ident())
            arrived.wait()
            release.wait(60)

    class InterruptedJoin(threading.Thread):
        def join(self, timeout=None):
            joins.append(self.name)
            if len(joins) == 1:
                arrived.wait()  # both threads are in a directory
                release.set()
                raise Interrupted
            return super().join(timeout)

    monkeypatch.setattr(safewalk.threading, "Thread", InterruptedJoin)
    with pytest.raises(Interrupted):
        run_policy(policy(tmp_path), trigger=CleanupRun.Trigger.COMMAND, hook=hold)
    assert not [t for t in threading.enumerate() if t.name.startswith("cleanup-remove-")]  # none left running
    gone = names - tree(tmp_path)
    # At most the directory each thread was in, and the next one it took before the stop was set: never all.
    assert 0 < len({name.split("/")[0] for name in gone}) <= 2 * safewalk.THREADS < 8
