"""The alerting core moved from monitoring to alerts (alerts 0001 + monitoring 0011) with its data.

A database at the schema just before the move is filled through the historic models, migrated
forward and back, and compared: incidents, events, channels, notifications and delivery attempts keep
their ids and values, the content types change app under the same ids (so permissions granted on them
and the admin history follow), and beat rows carry the tasks' names of each side.

The migrator (django-test-migrations) drops every table and rebuilds the schema, so these tests run
outside a transaction; afterwards it migrates the test database to the latest migrations again.
"""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)

# The latest migration of each app the data needs, without alerts. As a backward target,
# ("alerts", None) unapplies the alerts app (and monitoring 0011, which depends on it).
BEFORE_MOVE = [
    ("contenttypes", "0002_remove_content_type_name"),
    ("auth", "0012_alter_user_first_name_max_length"),
    ("admin", "0003_logentry_add_action_flag_choices"),
    ("django_celery_beat", "0019_alter_periodictasks_options"),
    ("inference", "0003_demo_engine_float32"),
    ("monitoring", "0010_telemetry_rules"),
    ("alerts", None),
]
AFTER_MOVE = [("alerts", "0001_initial"), ("monitoring", "0011_alerts_moved_out")]

MOVED = ["incident", "incidentevent", "notificationchannel", "notification", "deliveryattempt"]
RENAMED_TASKS = {
    "monitoring.tasks.repeat_red_alerts": "alerts.tasks.repeat_red_alerts",
    "monitoring.tasks.redeliver_stalled_notifications": "alerts.tasks.redeliver_stalled_notifications",
    "monitoring.tasks.deliver_notification": "alerts.tasks.deliver_notification",
    "monitoring.telemetry.rule_tasks.watch_telemetry_flow": "monitoring.tasks.watch_telemetry_flow",
}
INDEX_BEFORE, INDEX_AFTER = "monitoring__status_2a3d7c_idx", "alerts_noti_status_f2fa09_idx"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def migrate_to_before_move(migrator):
    """The pre-move schema, from the migrator's clean start (which drops every table).

    The clean start can only stop at a point of Django's full plan, where alerts 0001 comes before the
    latest auth and inference migrations: it stops just before alerts 0001, then the rest is applied.
    """
    migrator.apply_initial_migration(("alerts", None))
    return migrator.apply_tested_migration(BEFORE_MOVE).apps


# --- the data, written through the historic models of the pre-move state --------------------------


def fill_alerting(apps) -> None:
    """Incidents in each state with their events, channels, notifications with attempts, a cleanup run."""
    model = apps.get_model
    operator = model("auth", "User").objects.create(username="operator")
    Incident, Event = model("monitoring", "Incident"), model("monitoring", "IncidentEvent")
    common = {"opened_at": T0, "updated_at": T0 + 5 * MINUTE}
    red = Incident.objects.create(source="disk:/data", kind="disk", title="Disk data (/data)", level="red",
                                  peak_level="red", value=97.5, message="97.5% used", **common)
    resolved = Incident.objects.create(source="engine:demo", kind="engine", title="Engine demo", level="orange",
                                       peak_level="red", message="restarted", resolved_at=T0 + 5 * MINUTE, **common)
    acked = Incident.objects.create(source="gpu:0", kind="gpu", title="GPU 0", level="red", peak_level="red",
                                    value=91.0, message="91 °C", acknowledged_at=T0 + 5 * MINUTE,
                                    acknowledged_by=operator, **common)
    red_opened = Event.objects.create(incident=red, at=T0, kind="opened", level="yellow", value=86.0)
    Event.objects.create(incident=red, at=T0 + MINUTE, kind="escalated", level="red", value=97.5)
    Event.objects.create(incident=resolved, at=T0, kind="opened", level="red")
    Event.objects.create(incident=resolved, at=T0 + MINUTE, kind="deescalated", level="orange")
    Event.objects.create(incident=resolved, at=T0 + 5 * MINUTE, kind="resolved")
    Event.objects.create(incident=acked, at=T0, kind="opened", level="red", value=91.0)
    Event.objects.create(incident=acked, at=T0 + 5 * MINUTE, kind="acknowledged", user=operator)

    Channel = model("monitoring", "NotificationChannel")
    mail = Channel.objects.create(name="ops mail", kind="email", recipients="ops@example.com", repeat_minutes=15)
    hook = Channel.objects.create(name="ops hook", kind="webhook", url="https://hooks.example.com/a", secret="s3",
                                  address_policy="private", levels=["red"], incident_kinds=["disk", "gpu"],
                                  consecutive_failures=2, last_failure_at=T0, last_error="timed out")
    Notification, Attempt = model("monitoring", "Notification"), model("monitoring", "DeliveryAttempt")
    sent = Notification.objects.create(channel=mail, incident=red, event=red_opened, reason="opened",
                                       dedupe_key=f"{red.pk}:opened", level="yellow", subject="[YELLOW] Disk data",
                                       payload={"text": "86% used"}, status="sent", attempt_count=2, created_at=T0,
                                       sent_at=T0 + MINUTE)
    Attempt.objects.create(notification=sent, number=1, started_at=T0, finished_at=T0, status="failed",
                           error="connection refused")
    Attempt.objects.create(notification=sent, number=2, started_at=T0 + MINUTE, finished_at=T0 + MINUTE, status="ok")
    pending = Notification.objects.create(channel=hook, reason="test", dedupe_key="test:1", subject="Channel test",
                                          payload={"text": "test"}, status="sending", attempt_count=1,
                                          created_at=T0, claimed_until=T0 + MINUTE)
    Attempt.objects.create(notification=pending, number=1, started_at=T0)

    model("monitoring", "CleanupRun").objects.create(policy_name="vllm-cache", trigger="incident", incident=red,
                                                     started_at=T0, status="done", bytes_freed=4096)


def add_content_types(apps, app_label) -> dict[str, int]:
    """What post_migrate would have made (the migrator mutes it): a content type per model and its
    change permission."""
    ContentType, Permission = apps.get_model("contenttypes", "ContentType"), apps.get_model("auth", "Permission")
    types = {name: ContentType.objects.create(app_label=app_label, model=name) for name in MOVED}
    for name, content_type in types.items():
        Permission.objects.create(codename=f"change_{name}", name=f"Can change {name}", content_type=content_type)
    return {name: content_type.pk for name, content_type in types.items()}


def grant_incident_changes(apps, incident_type: int) -> None:
    """change_incident, granted to one user directly and to another through a group."""
    User, Group = apps.get_model("auth", "User"), apps.get_model("auth", "Group")
    change = apps.get_model("auth", "Permission").objects.get(codename="change_incident", content_type=incident_type)
    User.objects.create(username="direct").user_permissions.add(change)
    group = Group.objects.create(name="on call")
    group.permissions.add(change)
    User.objects.create(username="member").groups.add(group)


def log_incident_change(apps, incident_type: int) -> None:
    incident = apps.get_model("monitoring", "Incident").objects.get(source="disk:/data")
    apps.get_model("admin", "LogEntry").objects.create(
        action_time=T0, user=apps.get_model("auth", "User").objects.get(username="operator"),
        content_type_id=incident_type, object_id=str(incident.pk), object_repr=incident.title, action_flag=2,
        change_message="[]",
    )


def add_beat_rows(apps) -> None:
    """A schedule per old task name, as an operator may have added (the data migrations made some already)."""
    interval = apps.get_model("django_celery_beat", "IntervalSchedule").objects.create(every=45, period="seconds")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for task in RENAMED_TASKS:
        PeriodicTask.objects.create(name=f"extra {task}", task=task, interval=interval)


# --- what is compared ------------------------------------------------------------------------------


def alerting_rows(apps, app_label) -> dict[str, list]:
    """Every row of the moved models, all fields by id, and the cleanup runs' incident links."""
    rows = {name: list(apps.get_model(app_label, name).objects.order_by("pk").values()) for name in MOVED}
    runs = apps.get_model("monitoring", "CleanupRun").objects.order_by("pk")
    rows["cleanuprun.incident"] = list(runs.values_list("pk", "incident_id"))
    return rows


def content_types(apps) -> dict[int, tuple[str, str]]:
    ContentType = apps.get_model("contenttypes", "ContentType")
    return {ct.pk: (ct.app_label, ct.model) for ct in ContentType.objects.filter(model__in=MOVED)}


def holds(username: str, perm: str) -> bool:
    """Asked as the admin asks (the real auth backend), by app label and codename."""
    return get_user_model().objects.get(username=username).has_perm(perm)


def logged_incident(apps) -> tuple[int, str]:
    """The content type of the admin history entry and the incident it opens (as get_edited_object does)."""
    entry = apps.get_model("admin", "LogEntry").objects.get()
    content_type = entry.content_type
    incident = apps.get_model(content_type.app_label, content_type.model).objects.get(pk=entry.object_id)
    return content_type.pk, incident.source


def beat_tasks(apps) -> dict[int, str]:
    return dict(apps.get_model("django_celery_beat", "PeriodicTask").objects.values_list("pk", "task"))


def schema(app_label: str) -> tuple[set[str], set[str], str]:
    """Which of the moved tables exist (by either app's name), the notification index's name, and the
    table the cleanup run's incident key references (SQLite rewrites references on a rename)."""
    names = connection.introspection.table_names()
    tables = {name for name in names for model in MOVED if name in (f"monitoring_{model}", f"alerts_{model}")}
    with connection.cursor() as cursor:
        indexes = set(connection.introspection.get_constraints(cursor, f"{app_label}_notification"))
        _, cleanup_incident = connection.introspection.get_relations(cursor, "monitoring_cleanuprun")["incident_id"]
    return tables, indexes & {INDEX_BEFORE, INDEX_AFTER}, cleanup_incident


def assert_one_open_incident_per_source(apps) -> None:
    """The partial unique constraint came along with the renamed table, and so did the id sequence."""
    Incident = apps.get_model("alerts", "Incident")
    fields = {"kind": "disk", "title": "again", "level": "yellow", "peak_level": "yellow", "message": "",
              "opened_at": T0, "updated_at": T0}
    reopened = Incident.objects.create(source="engine:demo", **fields)  # its first incident is resolved
    assert reopened.pk > Incident.objects.exclude(pk=reopened.pk).latest("pk").pk
    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(source="disk:/data", **fields)
    reopened.delete()  # the way back is compared with the data as it was


# --- the tests -------------------------------------------------------------------------------------


def test_alerting_data_grants_and_schedules_survive_the_move_and_its_reverse(migrator):
    old_apps = migrate_to_before_move(migrator)
    fill_alerting(old_apps)
    types = add_content_types(old_apps, "monitoring")
    grant_incident_changes(old_apps, types["incident"])
    log_incident_change(old_apps, types["incident"])
    add_beat_rows(old_apps)
    rows, tasks = alerting_rows(old_apps, "monitoring"), beat_tasks(old_apps)
    # Something of every kind to lose: rows of each moved model, a beat row under each old task name.
    assert [len(rows[name]) for name in MOVED] == [3, 7, 2, 2, 3]
    assert set(RENAMED_TASKS) <= set(tasks.values())
    before_migrating = timezone.now()

    new_apps = migrator.apply_tested_migration(AFTER_MOVE).apps
    assert alerting_rows(new_apps, "alerts") == rows
    assert content_types(new_apps) == {pk: ("alerts", name) for name, pk in types.items()}
    for user in ("direct", "member"):
        assert (holds(user, "alerts.change_incident"), holds(user, "monitoring.change_incident")) == (True, False)
    assert logged_incident(new_apps) == (types["incident"], "disk:/data")
    assert beat_tasks(new_apps) == {pk: RENAMED_TASKS.get(task, task) for pk, task in tasks.items()}
    # A running beat polls this marker and reloads its schedule instead of sending the old names.
    marker = new_apps.get_model("django_celery_beat", "PeriodicTasks").objects.get(ident=1)
    assert marker.last_update >= before_migrating
    assert schema("alerts") == ({f"alerts_{name}" for name in MOVED}, {INDEX_AFTER}, "alerts_incident")
    assert_one_open_incident_per_source(new_apps)

    old_apps = migrator.apply_tested_migration(BEFORE_MOVE).apps
    assert alerting_rows(old_apps, "monitoring") == rows
    assert content_types(old_apps) == {pk: ("monitoring", name) for name, pk in types.items()}
    for user in ("direct", "member"):
        assert (holds(user, "alerts.change_incident"), holds(user, "monitoring.change_incident")) == (False, True)
    assert logged_incident(old_apps) == (types["incident"], "disk:/data")
    assert beat_tasks(old_apps) == tasks
    assert schema("monitoring") == ({f"monitoring_{name}" for name in MOVED}, {INDEX_BEFORE}, "monitoring_incident")


def test_alerts_content_types_left_by_a_rollback_give_way_to_the_moved_ones(migrator):
    """After a rollback, post_migrate (with alerts installed) makes fresh alerts content types beside the
    moved-back ones; the next move forward must not trip over them (unique app_label, model)."""
    old_apps = migrate_to_before_move(migrator)
    moved = add_content_types(old_apps, "monitoring")
    add_content_types(old_apps, "alerts")
    grant_incident_changes(old_apps, moved["incident"])

    new_apps = migrator.apply_tested_migration(AFTER_MOVE).apps
    assert content_types(new_apps) == {pk: ("alerts", name) for name, pk in moved.items()}
    assert holds("direct", "alerts.change_incident") and holds("member", "alerts.change_incident")
