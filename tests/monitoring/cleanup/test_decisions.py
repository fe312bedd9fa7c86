"""What a run removes and keeps, decided on real files (ages by os.utime, the clock by time-machine)."""

import os

import pytest

from monitoring.cleanup.run import run_policy
from monitoring.models import CleanupRun
from tests.support.cleanup import future_now, make_file, policy, tree

N = 168


@pytest.fixture
def now(time_machine):
    stamp = future_now()
    time_machine.move_to(stamp, tick=False)
    return stamp


@pytest.mark.django_db
def test_only_files_older_than_the_minimum_age_go(tmp_path, now):
    make_file(tmp_path, "young.bin", age_hours=N - 1, now=now)
    make_file(tmp_path, "old.bin", age_hours=N + 1, now=now)
    run = run_policy(policy(tmp_path), trigger=CleanupRun.Trigger.COMMAND)
    assert tree(tmp_path) == {"young.bin"}
    assert run.files_removed == 1 and run.removed == [["old.bin", 4096]]
    assert run.skipped == {"too_young": 1}
    assert run.status == CleanupRun.Status.OVER_LIMIT  # limit 0 and a young file is left


@pytest.mark.django_db
def test_a_recent_ctime_keeps_a_file_whatever_its_mtime(tmp_path, now):
    path = make_file(tmp_path, "unpacked.bin", age_hours=N * 10, now=now)
    os.chmod(path, 0o600)  # a metadata change now: the file was just touched
    run = run_policy(policy(tmp_path), trigger=CleanupRun.Trigger.COMMAND, now=os.stat(path).st_ctime + 3600)
    assert tree(tmp_path) == {"unpacked.bin"}
    assert run.skipped == {"too_young": 1}


@pytest.mark.django_db
def test_oldest_go_first_and_only_until_the_root_is_under_its_limit(tmp_path, now):
    for i in range(10):  # 10 files of 1 MiB, 170 h .. 215 h old
        make_file(tmp_path, f"d{i % 3}/f{i}.bin", size=1024 * 1024, age_hours=170 + 5 * i, now=now)
    run = run_policy(policy(tmp_path, max_size="6.5M"), trigger=CleanupRun.Trigger.SCHEDULE)
    # 10 MiB over a 6.5 MiB limit: the 4 oldest go (f9, f8, f7, f6), and no more.
    assert tree(tmp_path) == {f"d{i % 3}/f{i}.bin" for i in range(6)}
    assert [name for name, _ in run.removed] == ["d0/f9.bin", "d2/f8.bin", "d1/f7.bin", "d0/f6.bin"]
    assert run.bytes_freed == 4 * 1024 * 1024 and run.size_after == 6 * 1024 * 1024
    assert run.skipped == {"not_needed": 6}
    assert run.status == CleanupRun.Status.DONE


@pytest.mark.django_db
def test_nothing_goes_while_the_root_is_under_its_limit(tmp_path, now):
    make_file(tmp_path, "old.bin", age_hours=N * 2, now=now)
    run = run_policy(policy(tmp_path, max_size="1M"), trigger=CleanupRun.Trigger.SCHEDULE)
    assert tree(tmp_path) == {"old.bin"} and run.files_removed == 0 and run.status == CleanupRun.Status.DONE


@pytest.mark.django_db
def test_a_file_held_open_is_kept(tmp_path, now):
    held = make_file(tmp_path, "held.bin", age_hours=N * 2, now=now)
    make_file(tmp_path, "free.bin", age_hours=N * 2, now=now)
    with open(held, "rb"):
        run = run_policy(policy(tmp_path), trigger=CleanupRun.Trigger.COMMAND)
    assert tree(tmp_path) == {"held.bin"}
    assert run.skipped == {"open": 1}


@pytest.mark.django_db
def test_include_and_exclude_patterns(tmp_path, now):
    for name in ("a.tmp", "keep/a.tmp", "b.log", "c.tmp"):
        make_file(tmp_path, name, age_hours=N * 2, now=now)
    run = run_policy(policy(tmp_path, include="*.tmp", exclude="keep/*\nc.*"), trigger=CleanupRun.Trigger.COMMAND)
    assert tree(tmp_path) == {"keep/a.tmp", "b.log", "c.tmp"}
    assert run.skipped == {"excluded": 3}


@pytest.mark.django_db
def test_symlinks_are_never_followed(tmp_path, now):
    root, outside = tmp_path / "root", tmp_path / "outside"
    make_file(outside, "precious.bin", age_hours=N * 2, now=now)
    make_file(root, "old.bin", age_hours=N * 2, now=now)
    (root / "link-to-dir").symlink_to(outside)
    (root / "link-to-file").symlink_to(outside / "precious.bin")
    run = run_policy(policy(root), trigger=CleanupRun.Trigger.COMMAND)
    assert tree(outside) == {"precious.bin"}
    assert tree(root) == {"link-to-dir", "link-to-file"}  # links stay: they are not files of the cache
    assert run.skipped == {"symlink": 2}


@pytest.mark.django_db
def test_a_dry_run_decides_the_same_and_removes_nothing(tmp_path, now):
    for i in range(6):
        make_file(tmp_path, f"f{i}", size=1024 * 1024, age_hours=N + 10 * i, now=now)
    make_file(tmp_path, "young", age_hours=1, now=now)
    dry = run_policy(policy(tmp_path, max_size="3M"), trigger=CleanupRun.Trigger.COMMAND, dry_run=True)
    assert len(tree(tmp_path)) == 7
    real = run_policy(dry.policy, trigger=CleanupRun.Trigger.COMMAND)
    assert dry.removed == real.removed and dry.files_removed == real.files_removed == 4
    assert dry.skipped == real.skipped and dry.bytes_freed == real.bytes_freed


@pytest.mark.django_db
def test_directories_of_a_running_engine_are_not_entered(tmp_path, now, settings):
    from inference.models import Engine, EngineState

    model = tmp_path / "models" / "glm"
    make_file(model, "weights.bin", age_hours=N * 2, now=now)
    make_file(tmp_path, "models/other/weights.bin", age_hours=N * 2, now=now)
    engine = Engine.objects.create(name="glm", port=8100, model=str(model), served_model_name="glm",
                                   state=EngineState.READY)
    run = run_policy(policy(tmp_path), trigger=CleanupRun.Trigger.COMMAND)
    assert tree(tmp_path) == {"models/glm/weights.bin"}
    assert run.skipped == {"running_engine": 1}
    Engine.objects.filter(pk=engine.pk).update(state=EngineState.STOPPED)
    run_policy(run.policy, trigger=CleanupRun.Trigger.COMMAND)
    assert tree(tmp_path) == set()
