"""Where people see cleanup: the dashboard card and its buttons, the status bar's CACHE, manage.py clean_cache."""

import time

import pytest
from django.contrib.auth.models import Permission, User

from alerts.models import Incident
from glmadmin import live
from monitoring.models import CleanupPolicy, CleanupRun
from tests.support.cleanup import future_now, make_file, policy, tree, without_default_policies
from tests.support.processes import manage


@pytest.fixture
def cache(tmp_path, time_machine, db):
    without_default_policies()
    now = future_now()
    time_machine.move_to(now, tick=False)
    for i in range(3):
        make_file(tmp_path, f"kernels/k{i}.so", size=1024 * 1024, age_hours=300 + i, now=now)
    make_file(tmp_path, "kernels/new.so", size=1024 * 1024, age_hours=1, now=now)
    return tmp_path


def html(client) -> str:
    return " ".join(client.get("/").content.decode().split())


@pytest.mark.django_db
def test_dry_run_then_clean_now_from_the_dashboard(admin_client, cache):
    policy(cache, max_size="1.5M")
    page = html(admin_client)
    assert "Cache cleanup" in page and "No cleanup run yet" in page
    assert 'data-confirm="Remove cache files older than' in page

    response = admin_client.post("/cleanup/dry-run/", follow=True)
    run = CleanupRun.objects.get(kind="cache")
    assert run.dry_run and run.user.username == "admin" and run.trigger == CleanupRun.Trigger.MANUAL
    assert len(tree(cache)) == 4  # a dry run removes nothing
    assert "would remove 3 of 4 file(s), 3.0\xa0MB" in response.content.decode()

    admin_client.post("/cleanup/run/")
    assert tree(cache) == {"kernels/new.so"}
    page = html(admin_client)
    assert "kernels/k2.so" in page and "Clean now (dashboard)" in page and "3.0 MB" in page


@pytest.mark.django_db
def test_the_buttons_are_for_staff_with_permission(client, cache):
    policy(cache)
    user = User.objects.create_user("viewer", password="pw")
    client.force_login(user)
    assert "Clean now" not in html(client)
    assert client.post("/cleanup/run/").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="add_cleanuprun"))
    assert client.post("/cleanup/run/").status_code == 403  # and staff only
    assert len(tree(cache)) == 4 and not CleanupRun.objects.exists()
    assert client.get("/cleanup/run/").status_code in (403, 405)


@pytest.mark.django_db
def test_the_status_bar_shows_the_size_stored_by_the_last_run(cache, django_assert_max_num_queries):
    policy(cache, max_size="1G")
    CleanupPolicy.objects.create(name="not-engine", root=str(cache), engine_cache=False, last_size_bytes=10**9)
    from monitoring.cleanup.run import run_policy

    run_policy(CleanupPolicy.objects.get(name="cache"), trigger=CleanupRun.Trigger.SCHEDULE)
    assert live.state()["cache_bytes"] == 4 * 1024 * 1024  # engine caches only
    assert "CACHE: 4.0\xa0MB" in live.message()["html"]["statusbar"]


@pytest.mark.django_db
def test_a_root_that_cannot_get_under_its_limit_opens_an_incident_until_it_can(cache):
    from monitoring.cleanup.run import run_policy

    cache_policy = policy(cache, max_size="512K")  # the young file alone is over it
    run = run_policy(cache_policy, trigger=CleanupRun.Trigger.SCHEDULE)
    assert run.status == CleanupRun.Status.OVER_LIMIT
    incident = Incident.objects.open().get(source="cleanup:cache")
    assert incident.kind == "cleanup" and "still over the limit" in incident.message
    CleanupPolicy.objects.filter(pk=cache_policy.pk).update(max_size="2M")
    run_policy(CleanupPolicy.objects.get(pk=cache_policy.pk), trigger=CleanupRun.Trigger.SCHEDULE)
    assert not Incident.objects.open().filter(source="cleanup:cache").exists()


@pytest.mark.django_db(transaction=True)
def test_clean_cache_prints_the_summary(tmp_path):
    # Another process: time-machine cannot move its clock, so the minimum age is 0 and, every ctime
    # being about now, the files go in the order they were written.
    now = time.time()
    for i in range(3):
        make_file(tmp_path, f"kernels/k{i}.so", size=1024 * 1024, age_hours=300 + i, now=now)
    make_file(tmp_path, "kernels/new.so", size=1024 * 1024, age_hours=1, now=now)
    cache = tmp_path
    policy(cache, max_size="1.5M", min_age_hours=0)
    dry = manage("clean_cache", "--dry-run", "--policy", "cache")
    assert ("cache (cache, dry run): would remove 3 of 4 file(s), 3.0\xa0MB; 1.0\xa0MB left (limit 1.5\xa0MB)"
            in dry.stdout)
    assert "kept: 1 not needed" in dry.stdout
    assert "would remove: kernels/k0.so, kernels/k1.so, kernels/k2.so" in dry.stdout
    assert len(tree(cache)) == 4
    real = manage("clean_cache", "--policy", "cache")
    assert "cache (cache): removed 3 of 4 file(s)" in real.stdout
    assert tree(cache) == {"kernels/new.so"}


@pytest.mark.django_db(transaction=True)
def test_clean_cache_with_an_unknown_policy_says_so_in_one_line():
    result = manage("clean_cache", "--policy", "nope", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("CommandError: no cleanup or log policy is named 'nope' (there are:")
    assert len(result.stderr.strip().splitlines()) == 1
