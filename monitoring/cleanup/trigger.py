"""An orange (or worse) disk alert starts a cleanup run, recorded as triggered by that incident."""

from django.db import transaction

from ..incidents import Transition
from ..levels import Level, rank
from ..models import CleanupRun, IncidentEvent


def on_disk_transition(transition: Transition | None) -> bool:
    """Queue a cleanup once the incident is committed; True if one was queued."""
    if transition is None or transition.incident.is_test:
        return False
    if transition.kind not in (IncidentEvent.Kind.OPENED, IncidentEvent.Kind.ESCALATED):
        return False
    if rank(transition.incident.level) < rank(Level.ORANGE):
        return False
    from ..tasks import run_cleanup  # the tasks module imports the disk check, which imports this one

    incident_id = transition.incident.pk
    transaction.on_commit(lambda: run_cleanup.delay(CleanupRun.Trigger.INCIDENT, incident_id))
    return True
