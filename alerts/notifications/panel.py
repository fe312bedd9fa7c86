"""What the dashboard shows about notifications: channel health, and what was sent about each recent incident."""

from django.db.models import Prefetch

from .. import silences
from ..models import Incident, Notification, NotificationChannel


def panel(incidents: int = 8, tests: int = 3) -> dict:
    sent = Notification.objects.select_related("channel").order_by("created_at", "pk")
    recent = (Incident.objects.filter(notifications__isnull=False).distinct().order_by("-opened_at")
              .prefetch_related(Prefetch("notifications", queryset=sent))[:incidents])
    channels = list(NotificationChannel.objects.all())
    return {
        "channels": channels,
        "failing": [c for c in channels if c.enabled and not c.is_healthy],
        "incidents": recent,
        "tests": Notification.objects.filter(incident__isnull=True).select_related("channel")[:tests],
        "silences": silences.active(),
    }
