"""What a run lists and counts on the fast paths: the oldest files of a long list, files too young to be listed
one by one, and a file held open among many that are not."""

import heapq
import random
from operator import itemgetter

import pytest

from glmadmin.lib import safewalk
from monitoring.cleanup import service
from monitoring.cleanup.run import oldest, run_policy
from monitoring.models import CleanupRun
from tests.support.cleanup import future_now, make_file, policy, tree, without_default_policies

N = 168
LISTED = CleanupRun.MAX_LISTED


def files(ages) -> list[tuple]:
    return [(i % 7, f"f{i}", i, 4096, float(age)) for i, age in enumerate(ages)]


@pytest.mark.parametrize("ages", [
    pytest.param([random.Random(1).uniform(0, 1e6) for _ in range(20_000)], id="spread"),
    pytest.param([random.Random(2).choice((5, 6, 7)) for _ in range(20_000)], id="ties"),
    # Every 32nd file (the sample) is among the very oldest: the sample's bound lets too few through, so the
    # whole list must be ranked.
    pytest.param([i if i % 32 == 0 else 10**6 + i for i in range(20_000)], id="sample-of-the-oldest"),
    pytest.param([random.Random(3).uniform(0, 1e6) for _ in range(500)], id="short"),
])
def test_oldest_gives_what_nsmallest_gives(ages):
    listed = files(ages)
    assert oldest(listed, LISTED) == heapq.nsmallest(LISTED, listed, key=itemgetter(4))


@pytest.fixture
def now(time_machine):
    stamp = future_now()
    time_machine.move_to(stamp, tick=False)
    return stamp


def test_a_walk_with_a_cutoff_counts_the_younger_files_and_lists_the_older(tmp_path, now):
    make_file(tmp_path, "a/young.bin", age_hours=1, now=now)
    make_file(tmp_path, "old.bin", age_hours=N * 2, now=now)
    scan = safewalk.scan(str(tmp_path), older_than=now - N * 3600)
    assert [scan.relpath(f[0], f[1]) for f in scan.files] == ["old.bin"]
    assert scan.young == 1 and scan.count == 2 and scan.total_bytes == 2 * 4096


@pytest.mark.django_db
def test_a_run_counts_the_young_files_it_did_not_list(tmp_path, now):
    for i in range(3):
        make_file(tmp_path, f"young{i}.bin", age_hours=1, now=now)
    make_file(tmp_path, "old.bin", age_hours=N * 2, now=now)
    run = run_policy(policy(tmp_path), trigger=CleanupRun.Trigger.COMMAND, dry_run=True)
    assert run.files_scanned == 4 and run.files_removed == 1 and run.skipped == {"too_young": 3}
    assert run.bytes_freed == 4096 and run.size_after == 3 * 4096


@pytest.mark.django_db
def test_measuring_a_root_counts_every_file_young_or_old(tmp_path, now):
    without_default_policies()
    make_file(tmp_path, "young.bin", age_hours=1, now=now)
    make_file(tmp_path, "a/old.bin", age_hours=N * 2, now=now)
    measured = policy(tmp_path)
    assert service.measure() is True
    measured.refresh_from_db()
    assert measured.last_size_bytes == 2 * 4096


@pytest.mark.django_db
def test_one_open_file_among_many_is_kept_and_the_listing_is_the_oldest(tmp_path, now):
    for i in range(LISTED + 50):  # 169 h .. 231 h old: all older than the minimum, younger than their ctime
        make_file(tmp_path, f"d{i % 4}/f{i:03d}.bin", age_hours=N + 1 + i / 4, now=now)
    held = tmp_path / "d1" / f"f{LISTED + 49:03d}.bin"  # the oldest of all
    with open(held, "rb"):
        run = run_policy(policy(tmp_path), trigger=CleanupRun.Trigger.COMMAND)
    assert tree(tmp_path) == {f"d1/f{LISTED + 49:03d}.bin"}
    assert run.skipped == {"open": 1} and run.files_removed == LISTED + 49
    assert [name for name, _ in run.removed] == [f"d{i % 4}/f{i:03d}.bin" for i in range(LISTED + 48, 48, -1)]
