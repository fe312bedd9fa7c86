"""A run never leaves its root, survives errors on single files, and never runs twice on one root."""

import os
import subprocess

import pytest

from glmadmin.lib import filelock
from monitoring.cleanup.run import Busy, lock_for, run_policy
from monitoring.models import CleanupRun
from tests.support.cleanup import future_now, make_file, policy, tree
from tests.support.processes import manage

OLD = 200  # hours: over the minimum age, under the ctime age the clock gives (cleanup_support.DAYS)


@pytest.fixture
def now(time_machine):
    stamp = future_now()
    time_machine.move_to(stamp, tick=False)
    return stamp


@pytest.mark.django_db
def test_a_directory_swapped_for_a_symlink_mid_run_leads_nowhere_outside(tmp_path, now):
    root, outside = tmp_path / "root", tmp_path / "outside"
    files = ("a/f1", "b/g1", "a/f2", "c/h1")
    for name in files:
        make_file(root, name, age_hours=OLD - len(tree(root)), now=now)
    for name in ("f1", "f2", "g1", "h1"):
        make_file(outside, name, age_hours=OLD, now=now)
    decoy = tmp_path / "decoy"
    make_file(decoy, "h1", age_hours=OLD, now=now)
    first = []

    def swap(relpath):
        # Right before the first unlink, whichever directory the run is in: a and b become symlinks to
        # outside, c is replaced by another real directory.
        if not first:
            first.append(relpath.split("/")[0])
            os.rename(root / "a", root / "a.moved")
            (root / "a").symlink_to(outside)
            os.rename(root / "b", root / "b.moved")
            (root / "b").symlink_to(outside)
            os.rename(root / "c", root / "c.moved")
            os.rename(decoy, root / "c")

    run = run_policy(policy(root), trigger=CleanupRun.Trigger.COMMAND, hook=swap)
    assert tree(outside) == {"f1", "f2", "g1", "h1"}  # nothing outside the root was removed
    assert (root / "c" / "h1").exists()  # nor in the directory put in c's place
    # Files go directory by directory. The directory the run had open when it was moved (still inside the
    # root: the same directory, by another name) loses its files; every path through a, b or c opened
    # afterwards is refused: a symlink now, or not the directory the scan saw.
    gone = {name for name in files if name.startswith(f"{first[0]}/")}
    assert {name for name, _ in run.removed} == gone
    assert {path for path, _ in run.errors} == set(files) - gone
    assert all((root / f"{name.replace('/', '.moved/')}").exists() for name in set(files) - gone)


@pytest.mark.django_db
def test_permission_denied_on_one_file_is_recorded_and_the_run_goes_on(tmp_path, now):
    make_file(tmp_path, "locked/old.bin", age_hours=OLD, now=now)
    make_file(tmp_path, "free/old.bin", age_hours=OLD - 1, now=now)
    # Root ignores file modes; the immutable attribute denies root too.
    if subprocess.run(["chattr", "+i", str(tmp_path / "locked")], capture_output=True).returncode:
        pytest.skip("chattr +i is not supported on this filesystem, so nothing can deny root here")
    try:
        run = run_policy(policy(tmp_path), trigger=CleanupRun.Trigger.COMMAND)
    finally:
        subprocess.run(["chattr", "-i", str(tmp_path / "locked")], check=True)
    assert tree(tmp_path) == {"locked/old.bin"}
    assert run.errors == [["locked/old.bin", "Operation not permitted"]]
    assert run.files_removed == 1 and run.status == CleanupRun.Status.OVER_LIMIT


@pytest.mark.django_db
def test_a_second_concurrent_run_exits_on_the_lock(tmp_path, now):
    make_file(tmp_path, "a", age_hours=OLD, now=now)
    make_file(tmp_path, "b", age_hours=OLD - 1, now=now)
    cache = policy(tmp_path)
    second = []

    def start_another(relpath):
        try:
            run_policy(cache, trigger=CleanupRun.Trigger.MANUAL)
        except Busy as exc:
            second.append(str(exc))

    first = run_policy(cache, trigger=CleanupRun.Trigger.SCHEDULE, hook=start_another)
    assert second == [f"another cleanup of {tmp_path} is running"] * 2
    assert first.files_removed == 2 and CleanupRun.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_clean_cache_exits_when_another_process_holds_the_lock(tmp_path, now):
    make_file(tmp_path, "a", age_hours=OLD, now=now)
    policy(tmp_path)
    with filelock.exclusive(lock_for(str(tmp_path))) as acquired:
        assert acquired
        result = manage("clean_cache", "--policy", "cache", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"CommandError: another cleanup of {tmp_path} is running"
    assert tree(tmp_path) == {"a"}


@pytest.mark.django_db
@pytest.mark.privileged
def test_another_filesystem_mounted_below_the_root_is_not_entered(tmp_path, now):
    mount = tmp_path / "mnt"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        make_file(mount, "other-fs.bin", age_hours=OLD, now=now)
        make_file(tmp_path, "here.bin", age_hours=OLD, now=now)
        run = run_policy(policy(tmp_path), trigger=CleanupRun.Trigger.COMMAND)
        assert tree(tmp_path) == {"mnt/other-fs.bin"}
        assert run.skipped == {"mount_point": 1}
        assert ["mnt", "mount (tmpfs on tmpfs): not entered"] in run.notes
    finally:
        subprocess.run(["umount", str(mount)], check=True)
