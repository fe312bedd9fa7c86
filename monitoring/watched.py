"""A watched filesystem that is deleted, disabled or given another path takes its open incident with it.

The incident is resolved saying why, and the pause of new inference requests is
recomputed: a red alert about a disk nobody watches any more must not pause
inference for good. Connected to WatchedFilesystem's save and delete signals
(monitoring.apps); idempotent, so running it again changes nothing.
"""

from django.db import transaction

from alerts import admission
from alerts.incidents import resolve_unwatched
from alerts.models import Incident
from glmadmin import live

from .models import WatchedFilesystem


def resolve_orphans() -> list[str]:
    """Resolve every open disk incident whose filesystem is no longer watched; returns their sources."""
    watched = {fs.source: fs for fs in WatchedFilesystem.objects.all()}
    resolved = []
    for incident in Incident.objects.open().filter(kind=Incident.Kind.DISK, is_test=False):
        fs = watched.get(incident.source)
        if fs is not None and fs.enabled:
            continue
        path = incident.source.removeprefix("disk:")
        why = f"{fs.label} ({path}) is no longer checked: switched off" if fs else f"{path} is no longer watched"
        if resolve_unwatched(incident.source, why):
            resolved.append(incident.source)
    if resolved:
        transaction.on_commit(admission.sync, robust=True)  # the pause lifts with the commit
        live.publish_on_commit()
    return resolved


def on_change(sender, **kwargs):
    resolve_orphans()
