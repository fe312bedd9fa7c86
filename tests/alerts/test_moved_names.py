"""Incidents and notifications moved from the monitoring app to alerts: what people and machines kept
under the old names still works (admin links, Celery messages queued by the previous release)."""

import pytest

from glmadmin.celery import app

OLD_TASK_NAMES = {
    "monitoring.tasks.deliver_notification": "alerts.tasks.deliver_notification",
    "monitoring.tasks.repeat_red_alerts": "alerts.tasks.repeat_red_alerts",
    "monitoring.tasks.redeliver_stalled_notifications": "alerts.tasks.redeliver_stalled_notifications",
    "monitoring.telemetry.rule_tasks.watch_telemetry_flow": "monitoring.tasks.watch_telemetry_flow",
}


@pytest.mark.parametrize("old,new", OLD_TASK_NAMES.items())
def test_a_message_under_an_old_task_name_runs_the_moved_task(old, new):
    app.loader.import_default_modules()  # what a worker does when it starts
    assert old in app.tasks and new in app.tasks
    assert app.tasks[old].run is app.tasks[new].run


@pytest.mark.django_db
def test_an_old_name_runs_like_the_new_one():
    app.loader.import_default_modules()
    assert app.tasks["monitoring.tasks.repeat_red_alerts"].apply().get() == "queued 0 reminder(s), 0 escalation(s)"
    assert app.tasks["monitoring.tasks.deliver_notification"].apply((12345,)).get() == "skipped: no such notification"


@pytest.mark.parametrize("old,new", [
    ("/admin/monitoring/incident/", "/admin/alerts/incident/"),
    ("/admin/monitoring/incident/7/change/", "/admin/alerts/incident/7/change/"),
    ("/admin/monitoring/notificationchannel/add/?kind=email", "/admin/alerts/notificationchannel/add/?kind=email"),
])
def test_old_admin_links_lead_to_the_moved_pages(admin_client, old, new):
    response = admin_client.get(old)
    assert response.status_code == 301 and response["Location"] == new


def test_admin_pages_that_stayed_are_not_redirected(admin_client):
    assert admin_client.get("/admin/monitoring/watchedfilesystem/").status_code == 200
