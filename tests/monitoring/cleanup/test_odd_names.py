"""File names are bytes: one that is not UTF-8, holds a newline or control characters is removed as the policy
says, and every place that shows it (record, dashboard, admin, cleanup log, a notification) shows it safely."""

import os
import subprocess

import pytest

from alerts.models import Notification
from monitoring.cleanup import journal
from monitoring.cleanup.run import run_policy
from monitoring.cleanup.service import run_all
from monitoring.models import CleanupPolicy, CleanupRun
from tests.support import notify as notify_support
from tests.support.cleanup import future_now, make_file, make_raw, policy, tree, without_default_policies
from tests.support.notify import mail_channel, webhook, work

receiver, smtp = notify_support.receiver, notify_support.smtp  # real receivers, as fixtures of this module
pytestmark = pytest.mark.django_db
OLD = 200

# raw name -> how every record and page shows it
ODD = {
    b"old-\xff\xfe.bin": "old-\\xff\\xfe.bin",  # not UTF-8
    b"new\nline.bin": "new\\nline.bin",
    b"bell\x07-esc\x1b[31m.bin": "bell\\x07-esc\\x1b[31m.bin",
    "rtl-\u202egnp.bin".encode(): "rtl-\\u202egnp.bin",  # a bidi override: looks like "rtl-nib.png"
    b"back\\slash.bin": "back\\\\slash.bin",
}


@pytest.fixture
def now(time_machine):
    stamp = future_now()
    time_machine.move_to(stamp, tick=False)
    return stamp


@pytest.fixture
def odd_tree(tmp_path, now, db):
    without_default_policies()
    for name in ODD:
        make_raw(tmp_path, name, age_hours=OLD, now=now)
    make_raw(tmp_path, b"young-\xff.bin", age_hours=1, now=now)
    return tmp_path


def test_odd_names_go_as_the_policy_says_and_the_debug_log_shows_each_on_its_own_line(odd_tree):
    journal.path().unlink(missing_ok=True)  # this run's lines only
    run = run_policy(policy(odd_tree, log_level=CleanupPolicy.LogLevel.FILES), trigger=CleanupRun.Trigger.COMMAND)
    assert os.listdir(os.fsencode(odd_tree)) == [b"young-\xff.bin"]
    assert sorted(name for name, _ in run.removed) == sorted(ODD.values())
    assert run.skipped["too_young"] == 1
    lines = journal.path().read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + len(ODD) + len(run.notes)  # the summary, then one line per file (none split)
    assert sorted(line.split("   removed ", 1)[1] for line in lines if "   removed " in line) == sorted(
        f"{shown} (4096 B)" for shown in ODD.values())


def test_a_run_with_odd_names_at_debug_does_not_stop_the_policies_after_it(odd_tree, tmp_path_factory, now):
    policy(odd_tree, name="a-odd", log_level=CleanupPolicy.LogLevel.FILES)
    later = tmp_path_factory.mktemp("later")
    make_file(later, "old.bin", age_hours=OLD, now=now)
    policy(later, name="b-later")
    outcomes = run_all(trigger=CleanupRun.Trigger.SCHEDULE)
    assert [o.run.policy_name for o in outcomes] == ["a-odd", "b-later"]
    assert tree(later) == set()


def test_the_dashboard_admin_and_clean_cache_show_odd_names(odd_tree, admin_client):
    run = run_policy(policy(odd_tree), trigger=CleanupRun.Trigger.COMMAND)
    page = admin_client.get("/")
    assert page.status_code == 200
    text = page.content.decode()
    for shown in ODD.values():
        assert f"<code>{shown}</code>" in text
    assert admin_client.get("/admin/monitoring/cleanuprun/").status_code == 200
    change = admin_client.get(f"/admin/monitoring/cleanuprun/{run.pk}/change/")
    assert change.status_code == 200 and "old-\\\\xff\\\\xfe.bin" in change.content.decode()  # in its JSON


def test_a_notification_names_an_odd_file_it_could_not_remove(odd_tree, now, receiver, smtp,
                                                               django_capture_on_commit_callbacks):
    stuck = odd_tree / "stuck"
    stuck.mkdir()
    make_raw(stuck, b"locked\n\xff.bin", age_hours=OLD, now=now)
    # Root ignores file modes; the immutable attribute denies root too.
    if subprocess.run(["chattr", "+i", str(stuck)], capture_output=True).returncode:
        pytest.skip("chattr +i is not supported on this filesystem, so nothing can deny root here")
    webhook(receiver.url, levels=["yellow"])
    mail_channel(levels=["yellow"])
    try:
        with django_capture_on_commit_callbacks(execute=True):
            run = run_policy(policy(odd_tree), trigger=CleanupRun.Trigger.SCHEDULE)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert run.errors == [["stuck/locked\\n\\xff.bin", "Operation not permitted"]]
    work()
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
    (request,) = receiver.requests
    assert "the first: stuck/locked\\n\\xff.bin: Operation not permitted" in request.body["text"]
    (_, mail), = smtp.messages
    assert "stuck/locked\\n\\xff.bin" in mail.get_content()
