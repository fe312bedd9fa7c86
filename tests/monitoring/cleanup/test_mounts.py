"""A run never crosses a mount point: not a bind mount of the same filesystem (same st_dev), not a file
mounted over a file, not a mount made after the run read the kernel's mount table. Real mounts."""

import os

import pytest

from glmadmin.lib import mounts, safewalk
from monitoring.cleanup.run import run_policy
from monitoring.models import CleanupRun
from tests.support.cleanup import future_now, make_file, mounted, policy, tree

pytestmark = [pytest.mark.privileged, pytest.mark.django_db]
OLD = 200  # hours: over the minimum age


@pytest.fixture
def now(time_machine):
    stamp = future_now()
    time_machine.move_to(stamp, tick=False)
    return stamp


def test_a_bind_mount_of_the_same_filesystem_inside_the_root_is_not_entered(tmp_path, now):
    root, models = tmp_path / "cache", tmp_path / "models"  # a models directory bind-mounted into the cache
    for i in range(20):
        make_file(models, f"m{i:02d}.bin", age_hours=OLD, now=now)
    make_file(root, "old.bin", age_hours=OLD, now=now)
    (root / "models").mkdir()
    with mounted("--bind", str(models), target=root / "models"):
        assert os.stat(root / "models").st_dev == os.stat(root).st_dev  # the trap: st_dev cannot tell
        dry = run_policy(policy(root), trigger=CleanupRun.Trigger.COMMAND, dry_run=True)
        real = run_policy(dry.policy, trigger=CleanupRun.Trigger.COMMAND)
        assert len(tree(root / "models")) == 20
    assert tree(models) == {f"m{i:02d}.bin" for i in range(20)}  # 20 of 20 outside the root are still there
    for run in (dry, real):
        assert run.removed == [["old.bin", 4096]] and run.files_scanned == 1
        assert run.skipped["mount_point"] == 1
        # The dry run says what it passed over and why.
        assert [why for what, why in run.notes if what == "models"] == [
            f"bind mount of {models} ({mounts_type(root)} on {mounts_source(root)}): not entered"]
    assert "1 mount point(s) not entered" in dry.message


def test_a_file_mounted_over_a_file_is_neither_listed_nor_removed(tmp_path, now):
    root, outside = tmp_path / "cache", tmp_path / "outside"
    precious = make_file(outside, "precious.bin", age_hours=OLD, now=now)
    make_file(root, "cover.bin", age_hours=OLD, now=now)
    with mounted("--bind", str(precious), target=root / "cover.bin"):
        dry = run_policy(policy(root), trigger=CleanupRun.Trigger.COMMAND, dry_run=True)
        real = run_policy(dry.policy, trigger=CleanupRun.Trigger.COMMAND)
    assert precious.exists() and (root / "cover.bin").exists()
    for run in (dry, real):
        assert run.removed == [] and run.errors == [] and run.skipped["mount_point"] == 1
        assert run.notes[0][0] == "cover.bin"


def test_a_mount_made_after_the_table_was_read_is_not_entered_either(tmp_path, now, monkeypatch):
    root, outside = tmp_path / "cache", tmp_path / "outside"
    make_file(outside, "precious.bin", age_hours=OLD, now=now)
    make_file(root, "old.bin", age_hours=OLD, now=now)
    (root / "late").mkdir()
    with mounted("--bind", str(outside), target=root / "late"):
        # As if the table had been read just before the mount: the walk still sees that the directory
        # it opened lies on another mount.
        monkeypatch.setattr(mounts, "below", lambda root: {})
        scan = safewalk.scan(str(root))
    assert [scan.relpath(f[0], f[1]) for f in scan.files] == ["old.bin"]
    assert scan.notes == [("late", "mount made during the run: not entered")]


def mounts_type(path) -> str:
    return _mount_of(path).fs_type


def mounts_source(path) -> str:
    return _mount_of(path).source


def _mount_of(path):
    """The mount holding path (the longest mount point above it)."""
    real = os.path.realpath(path)
    return max((m for m in mounts.table() if real == m.point or real.startswith(m.point.rstrip("/") + "/")),
               key=lambda m: len(m.point))
