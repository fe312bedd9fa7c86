"""Notification tasks: one task per message, so a dead channel delays no other. Each is safe to
repeat or overlap: deliveries are claimed in the database, reminders have fixed keys."""

from celery import shared_task

from glmadmin import jobs

from .notifications import delivery, planner


@shared_task(soft_time_limit=60, time_limit=90)
def deliver_notification(notification_id: int) -> str:
    outcome = delivery.deliver(notification_id)
    if outcome.retry_in is not None:
        # Back-off by a countdown; if this message is lost the stalled-notification sweep finds the row.
        deliver_notification.apply_async((notification_id,), countdown=outcome.retry_in)
    return str(outcome)


@shared_task(soft_time_limit=30, time_limit=45)
def repeat_red_alerts() -> str:
    reminders, escalations = planner.plan_repeats(), planner.plan_escalations()
    return f"queued {len(reminders)} reminder(s), {len(escalations)} escalation(s)"


@shared_task(soft_time_limit=30, time_limit=45)
def redeliver_stalled_notifications() -> str:
    return f"queued {len(planner.enqueue(delivery.stalled()))} stalled notification(s)"


@shared_task(soft_time_limit=30, time_limit=45)
def release_silences() -> str:
    # Also what red disks held back (inhibition): one beat row sends whatever is no longer held.
    return f"queued {len(planner.release_held())} message(s) held back by ended silences or red disks"


# The names these tasks had before the alerts app existed (monitoring.tasks.*): messages queued by
# an older release, and beat rows not yet migrated, still run. Remove one release after 0.2.
jobs.alias("monitoring.tasks.deliver_notification", deliver_notification)
jobs.alias("monitoring.tasks.repeat_red_alerts", repeat_red_alerts)
jobs.alias("monitoring.tasks.redeliver_stalled_notifications", redeliver_stalled_notifications)
