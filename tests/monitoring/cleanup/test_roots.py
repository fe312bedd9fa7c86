"""Where cleanup may act: roots are judged in their canonical spelling against the allowed directories
(a positive rule), in the admin and again by every run before it takes its lock; one lock per real directory."""

import pytest

from monitoring.cleanup.run import Busy, run_policy
from monitoring.models import CleanupPolicy, CleanupRun
from tests.support.cleanup import future_now, make_file, policy, tree

ADD_URL = "/admin/monitoring/cleanuppolicy/add/"
OLD = 200
pytestmark = pytest.mark.django_db


@pytest.fixture
def now(time_machine):
    stamp = future_now()
    time_machine.move_to(stamp, tick=False)
    return stamp


def add(admin_client, root):
    data = {"name": "cache", "root": str(root), "enabled": "on", "engine_cache": "on", "max_size": "2G",
            "min_age_hours": "168", "include": "*", "exclude": "", "log_level": "INFO"}
    response = admin_client.post(ADD_URL, data)
    errors = response.context["adminform"].form.errors.get("root", []) if response.status_code == 200 else []
    return response.status_code, " ".join(errors)


@pytest.mark.parametrize("root", ["//etc", "//usr", "//var", "/var/lib"])
def test_system_directories_are_refused_however_spelled(admin_client, root):
    status, error = add(admin_client, root)
    assert status == 200 and not CleanupPolicy.objects.filter(name="cache").exists()
    assert f"/{root.lstrip('/')} is outside the directories cleanup may act in" in error  # //etc is /etc


def test_a_root_is_saved_in_its_canonical_spelling(admin_client, tmp_path):
    (tmp_path / "cache").mkdir()
    for spelling in (f"{tmp_path}/cache/", f"/{tmp_path}/cache", f"{tmp_path}//cache/."):
        CleanupPolicy.objects.filter(name="cache").delete()
        assert add(admin_client, spelling) == (302, "")
        assert CleanupPolicy.objects.get(name="cache").root == f"{tmp_path}/cache"


def test_a_root_below_a_symlinked_parent_is_refused_naming_the_real_directory(admin_client, tmp_path):
    (tmp_path / "real" / "cache").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    status, error = add(admin_client, tmp_path / "link" / "cache")
    assert status == 200 and f"enter the directory it points to ({tmp_path}/real/cache)" in error


def test_only_the_allowed_directories_can_be_roots(admin_client, tmp_path, settings):
    (tmp_path / "allowed" / "hf").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    settings.CLEANUP_ALLOWED_ROOTS = [str(tmp_path / "allowed")]
    status, error = add(admin_client, tmp_path / "elsewhere")
    assert status == 200
    assert error == (f"{tmp_path}/elsewhere is outside the directories cleanup may act in ({tmp_path}/allowed); "
                     "to confirm it, an operator adds it to GLMADMIN_CLEANUP_ALLOWED_ROOTS.")
    assert add(admin_client, tmp_path / "allowed" / "hf") == (302, "")


def test_a_run_refuses_a_root_outside_the_allowed_directories(tmp_path, settings, now):
    # Saved before the rule existed, or the setting changed since: the run judges again.
    make_file(tmp_path / "elsewhere", "old.bin", age_hours=OLD, now=now)
    settings.CLEANUP_ALLOWED_ROOTS = [str(tmp_path / "allowed")]
    run = run_policy(policy(tmp_path / "elsewhere"), trigger=CleanupRun.Trigger.SCHEDULE)
    assert tree(tmp_path / "elsewhere") == {"old.bin"}
    assert run.status == CleanupRun.Status.FAILED
    assert run.message.startswith(f"refused: {tmp_path}/elsewhere is outside the directories cleanup may act in")


def test_one_lock_per_real_directory_however_the_root_is_spelled(tmp_path, now):
    root = tmp_path / "cache"
    make_file(root, "a", age_hours=OLD, now=now)
    (tmp_path / "link").symlink_to(tmp_path)
    spellings = [f"{root}/", f"/{root}", f"{root}/./"]
    others = [CleanupPolicy.objects.create(name=f"other-{i}", root=spelling, max_size="0")
              for i, spelling in enumerate(spellings)]
    through_link = CleanupPolicy.objects.create(name="through-link", root=f"{tmp_path}/link/cache", max_size="0")
    busy, refused = [], []

    def start_the_others(relpath):
        for other in others:
            try:
                run_policy(other, trigger=CleanupRun.Trigger.MANUAL)
            except Busy as exc:
                busy.append(str(exc))
        refused.append(run_policy(through_link, trigger=CleanupRun.Trigger.MANUAL))

    first = run_policy(policy(root), trigger=CleanupRun.Trigger.SCHEDULE, hook=start_the_others)
    assert busy == [f"another cleanup of {root} is running"] * 3
    assert refused[0].status == CleanupRun.Status.FAILED and "goes through a symlink" in refused[0].message
    assert first.files_removed == 1 and first.root == str(root)
