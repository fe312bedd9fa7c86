"""This app's part of the live page state (glmadmin/live.py): the open incidents and the red pause."""

from . import admission
from .models import Incident

# Without the database nothing renders anyway; this keeps the shape for the templates.
FALLBACK = {"admission": {"paused": False, "reason": ""}, "incidents": []}


def part() -> dict:
    incidents = list(Incident.objects.open().order_by("-opened_at"))
    return {
        "admission": admission.from_incidents(incidents).as_dict(),
        "incidents": [
            {"id": i.pk, "level": i.level, "title": i.title, "message": i.message, "is_test": i.is_test,
             "opened_at": i.opened_at.isoformat()}
            for i in incidents
        ],
    }
