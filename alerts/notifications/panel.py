"""What the dashboard shows about notifications: channel health, and what was sent about each recent incident."""

from django.db.models import Prefetch, Q

from .. import inhibition, silences
from ..models import Incident, Notification, NotificationChannel, NotificationItem


def panel(incidents: int = 8, tests: int = 3) -> dict:
    sent = Notification.objects.select_related("channel").order_by("created_at", "pk")
    grouped = NotificationItem.objects.select_related("notification__channel")
    recent = list(Incident.objects.filter(Q(notifications__isnull=False) | Q(notification_items__isnull=False))
                  .distinct().order_by("-opened_at")
                  .prefetch_related(Prefetch("notifications", queryset=sent),
                                    Prefetch("notification_items", queryset=grouped))[:incidents])
    for incident in recent:
        # What was sent about it: alone, or in a host's grouped message (listed once per message).
        messages = {n.pk: n for n in incident.notifications.all()}
        messages.update((item.notification_id, item.notification) for item in incident.notification_items.all())
        incident.sent = sorted(messages.values(), key=lambda n: (n.created_at, n.pk))
    channels = list(NotificationChannel.objects.all())
    return {
        "channels": channels,
        "failing": [c for c in channels if c.enabled and not c.is_healthy],
        "incidents": recent,
        "tests": Notification.objects.filter(incident__isnull=True, group="").select_related("channel")[:tests],
        "silences": silences.active(),
        "inhibited": inhibition.inhibited(),
    }
