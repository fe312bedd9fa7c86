"""An orange (or worse) disk alert starts a cleanup run, recorded as triggered by that incident."""

from django.db import transaction

from alerts.incidents import Transition
from alerts.levels import Level, rank
from alerts.models import IncidentEvent
from glmadmin import jobs

from ..models import CleanupRun

CLEANUP_TASK = "monitoring.tasks.run_cleanup"


def on_disk_transition(transition: Transition | None) -> bool:
    """Queue a cleanup once the incident is committed; True if one was queued."""
    if transition is None or transition.incident.is_test:
        return False
    if transition.kind not in (IncidentEvent.Kind.OPENED, IncidentEvent.Kind.ESCALATED):
        return False
    if rank(transition.incident.level) < rank(Level.ORANGE):
        return False
    incident_id = transition.incident.pk
    transaction.on_commit(lambda: jobs.enqueue(CLEANUP_TASK, CleanupRun.Trigger.INCIDENT, incident_id))
    return True
