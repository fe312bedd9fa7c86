"""The walk's helper process (a second process that walks some of a big tree's subtrees) finds exactly what the
walk alone finds, meets mount points as the walk does, and leaves no gap and no process behind when it fails or
the walk is cut short. Real mounts, real odd names, a real second process."""

import os
import stat

import pytest

from glmadmin.lib import mounts, safewalk
from monitoring.cleanup.run import run_policy
from monitoring.models import CleanupRun
from tests.support.cleanup import future_now, make_file, make_raw, mounted, policy, tree

pytestmark = pytest.mark.privileged
HOUR = 3600


def found(scan: safewalk.Scan) -> dict:
    """Everything a scan found, in a form that does not depend on who walked what or in which order."""
    return {
        "files": sorted((scan.relpath(f[0], f[1]), f[2], f[3], f[4]) for f in scan.files),
        "dirs": sorted(d.relpath for d in scan.dirs.values()),
        "young": scan.young, "total_bytes": scan.total_bytes, "skipped": scan.skipped,
        "errors": sorted(scan.errors), "notes": sorted(scan.notes),
    }


def by_helper(scan: safewalk.Scan) -> set[str]:
    """The directories the helper process walked (it numbers its own from HELPER_BASE)."""
    return {d.relpath for index, d in scan.dirs.items() if index >= safewalk.HELPER_BASE}


@pytest.fixture
def now() -> float:
    """A clock DAYS ahead (the kernel stamps each new file's ctime "now"); the walk is given its cutoff from it."""
    return future_now()


@pytest.fixture
def trap_tree(tmp_path, now):
    """A tree with every kind of thing the walk must sort out, most of it below the first level (the helper's
    part): odd names, symlinks, a FIFO, young and old files, and room for mounts."""
    root, outside = tmp_path / "cache", tmp_path / "outside"
    make_file(outside, "precious.bin", age_hours=300, now=now)
    make_file(root, "top.bin", age_hours=300, now=now)
    for t in range(12):
        for s in range(3):
            for f in range(4):
                make_file(root, f"t{t:02d}/s{s}/f{f}.bin", age_hours=1 if f == 0 else 300, now=now)
    deep = root / "t03" / "s1"
    make_raw(deep, b"old-\xff\xfe.bin", age_hours=300, now=now)
    make_raw(deep, b"new\nline.bin", age_hours=300, now=now)
    os.mkdir(os.path.join(os.fsencode(root / "t04"), b"dir-\xff\n"))
    make_raw(os.path.join(os.fsencode(root / "t04"), b"dir-\xff\n"), b"inner.bin", age_hours=300, now=now)
    (root / "t05" / "s0" / "link.bin").symlink_to(outside / "precious.bin")
    (root / "t05" / "s0" / "linkdir").symlink_to(outside)
    os.mkfifo(root / "t06" / "s2" / "fifo")
    (root / "t07" / "s0" / "bind").mkdir()
    (root / "t08" / "s1" / "tmp").mkdir()
    return root, outside


@pytest.mark.parametrize("helper", ["all", "auto"])
def test_the_helper_finds_exactly_what_the_walk_alone_finds(trap_tree, now, monkeypatch, helper):
    root, outside = trap_tree
    # Several units per queue record, and (for "auto") the helper started after the first subtree.
    monkeypatch.setattr(safewalk, "MAX_CHUNKS", 5)
    monkeypatch.setattr(safewalk, "HELPER_FROM", 1)
    monkeypatch.setattr(safewalk, "HELPER_WINDOW", 0)
    monkeypatch.setattr(safewalk, "HELPER_IDLE", 0)  # as on an idle machine, however busy this one is
    with mounted("--bind", str(outside), target=root / "t07" / "s0" / "bind"), \
            mounted("-t", "tmpfs", "tmpfs", target=root / "t08" / "s1" / "tmp"):
        (root / "t08" / "s1" / "tmp" / "on-tmpfs.bin").write_bytes(b"x")
        protected = {"t09/s2"}
        alone = safewalk.scan(str(root), protected, older_than=now - 100 * HOUR, helper="off")
        shared = safewalk.scan(str(root), protected, older_than=now - 100 * HOUR, helper=helper)
    assert found(shared) == found(alone)
    assert not by_helper(alone)
    if helper == "all":  # every subtree was the helper's: each check above ran in it
        assert "t07/s0" in by_helper(shared) and "t04/dir-\udcff\n" in by_helper(shared)
    # And what it found is what a walk must find (not merely the same mistakes twice).
    files = {name for name, *_ in found(shared)["files"]}
    assert "t03/s1/old-\udcff\udcfe.bin" in files and "t03/s1/new\nline.bin" in files
    assert "t04/dir-\udcff\n/inner.bin" in files and "top.bin" in files
    assert not any(name.startswith(("t07/s0/bind", "t08/s1/tmp", "t09/s2")) for name in files)
    assert len(files) == 12 * 3 * 3 - 3 + 4  # the old ones, less the protected directory's, plus four
    assert shared.young == 12 * 3 - 1  # the protected directory's young file is not counted either
    assert shared.skipped == {"mount_point": 2, "symlink": 2, "not_a_regular_file": 1, "running_engine": 1}
    assert [what for what, _ in sorted(shared.notes)] == ["t07/s0/bind", "t08/s1/tmp"]


def test_the_helper_does_not_enter_a_mount_made_after_the_table_was_read(trap_tree, now, monkeypatch):
    root, outside = trap_tree
    with mounted("--bind", str(outside), target=root / "t07" / "s0" / "bind"):
        # As if the table had been read just before the mount: the helper is handed the table the walk read,
        # and still sees that the directory it opened lies on another mount.
        monkeypatch.setattr(mounts, "below", lambda root: {})
        scan = safewalk.scan(str(root), older_than=now - 100 * HOUR, helper="all")
    assert "t07/s0" in by_helper(scan)
    assert scan.notes == [("t07/s0/bind", "mount made during the run: not entered")]
    assert not any(f[1] == "precious.bin" for f in scan.files)


def test_a_subtree_replaced_after_the_split_is_not_walked_by_the_helper(trap_tree, now, monkeypatch):
    root, outside = trap_tree
    split = safewalk._Walk.split

    def split_then_swap(walk, chain):
        units = split(walk, chain)
        # Between the split (which recorded t02's inode) and the helper reaching t02: t02 becomes a symlink
        # to a directory outside the root, and t01 another directory.
        os.rename(root / "t02", root / "t02-old")
        (root / "t02").symlink_to(outside)
        os.rename(root / "t01", root / "t01-old")
        (root / "t01").mkdir()
        make_file(root / "t01", "stranger.bin", age_hours=300, now=now)
        return units

    monkeypatch.setattr(safewalk._Walk, "split", split_then_swap)
    scan = safewalk.scan(str(root), older_than=now - 100 * HOUR, helper="all")
    names = {scan.relpath(f[0], f[1]) for f in scan.files}
    assert not any(name.startswith(("t01/", "t02/")) for name in names)
    assert {what for what, _ in scan.errors} == {"t01", "t02"}
    assert "t03/s0/f1.bin" in names


@pytest.mark.parametrize("program", [
    pytest.param("/bin/false", id="does-not-start"),
    # Takes two queue records (its argument 8 is the queue's descriptor), then dies: their subtrees are
    # walked by the walk itself.
    pytest.param('dd bs=8 count=2 status=none <&"$8" >/dev/null; exit 3', id="dies-holding-subtrees"),
])
def test_a_failed_helper_leaves_its_part_to_the_walk(trap_tree, now, monkeypatch, tmp_path, program):
    root, _ = trap_tree
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!/bin/sh\n{program}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    alone = safewalk.scan(str(root), older_than=now - 100 * HOUR, helper="off")
    monkeypatch.setattr(safewalk, "HELPER_PYTHON", str(fake))
    shared = safewalk.scan(str(root), older_than=now - 100 * HOUR, helper="all")
    assert found(shared) == found(alone) and not by_helper(shared)


def test_a_walk_cut_short_leaves_no_helper_running(trap_tree, now, monkeypatch):
    root, _ = trap_tree
    started = []
    init = safewalk._Started.__init__

    def recorded(self, *args):
        init(self, *args)
        started.append(self)

    def interrupted(self, result):
        raise KeyboardInterrupt  # as a task's time limit lands while the walk waits for its helper

    monkeypatch.setattr(safewalk._Started, "__init__", recorded)
    monkeypatch.setattr(safewalk._Started, "collect", interrupted)
    with pytest.raises(KeyboardInterrupt):
        safewalk.scan(str(root), older_than=now - 100 * HOUR, helper="all")
    assert started and started[0].proc.returncode is not None  # ended and reaped
    with pytest.raises(ProcessLookupError):
        os.kill(started[0].proc.pid, 0)


@pytest.mark.parametrize(("idle", "starts"), [(0, True), (float("inf"), False)])
def test_the_helper_starts_only_when_the_machine_has_a_core_to_spare(trap_tree, now, monkeypatch, idle, starts):
    root, _ = trap_tree
    started = []
    init = safewalk._Started.__init__

    def recorded(self, *args):
        init(self, *args)
        started.append(self)

    monkeypatch.setattr(safewalk._Started, "__init__", recorded)
    monkeypatch.setattr(safewalk, "HELPER_FROM", 1)
    monkeypatch.setattr(safewalk, "HELPER_WINDOW", 0)
    # The CPUs' idle time (/proc/stat) since the walk began, per second, against what it must reach: 0 is met
    # on any machine, infinity on none.
    monkeypatch.setattr(safewalk, "HELPER_IDLE", idle)
    scan = safewalk.scan(str(root), older_than=now - 100 * HOUR)
    assert len(started) == (1 if starts else 0)
    assert len(scan.files) == 12 * 3 * 3 + 4


@pytest.mark.django_db
def test_a_real_run_removes_what_the_helper_found_and_nothing_beyond(trap_tree, now, monkeypatch):
    root, outside = trap_tree
    scans, scan = [], safewalk.scan

    def every_subtree_to_the_helper(*args, **kwargs):
        scans.append(scan(*args, **{**kwargs, "helper": "all"}))
        return scans[-1]

    monkeypatch.setattr(safewalk, "scan", every_subtree_to_the_helper)
    with mounted("--bind", str(outside), target=root / "t07" / "s0" / "bind"):
        run = run_policy(policy(root), trigger=CleanupRun.Trigger.COMMAND, now=now)
        assert tree(root / "t07" / "s0" / "bind") == {"precious.bin"}
    assert "t03/s1" in by_helper(scans[0])  # the removal reached the helper's directories from the root
    assert run.files_removed == 12 * 3 * 3 + 4 and run.error_count == 0
    young = {f"t{t:02d}/s{s}/f0.bin" for t in range(12) for s in range(3)}
    assert tree(root) == young | {"t05/s0/link.bin", "t05/s0/linkdir"}
    assert tree(outside) == {"precious.bin"}
