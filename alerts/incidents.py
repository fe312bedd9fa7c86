"""Drive one incident per subject through open -> escalate/de-escalate -> resolve.

Checks may run twice at once (two workers, a manual check beside the beat
one). Each transition is claimed in the database: opening relies on the
one-open-incident-per-source constraint, every later change is a conditional
UPDATE on the level we saw, and only the caller whose statement changed the
row records the event. So every transition is recorded exactly once.
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .levels import rank
from .models import Incident, IncidentEvent
from .notifications import planner

Kind = IncidentEvent.Kind


@dataclass(frozen=True)
class Transition:
    incident: Incident
    kind: str  # an IncidentEvent.Kind


def drive(source: str, target: str | None, *, kind: str, title: str, value: float | None,
          message: str, is_test: bool = False, host: str | None = None) -> Transition | None:
    """Move the open incident of `source` to `target` (None = resolved).

    `host` is the machine the trouble is on; by default the one running this code (GLMADMIN_HOST_NAME).

    Returns the transition this call made, or None when there was nothing to do
    or a concurrent caller made it first.
    """
    current = Incident.objects.open().filter(source=source).first()
    if current is None:
        if target is None:
            return None
        return _open(source, target, kind=kind, title=title, value=value, message=message, is_test=is_test,
                     host=settings.GLMADMIN_HOST_NAME if host is None else host)
    if target == current.level:
        return None
    return _move(current, target, value=value, message=message)


def _open(source, target, *, kind, title, value, message, is_test, host) -> Transition | None:
    now = timezone.now()
    try:
        with transaction.atomic():
            incident = Incident.objects.create(
                source=source, kind=kind, host=host, title=title, level=target, peak_level=target, value=value,
                message=message, is_test=is_test, opened_at=now, updated_at=now,
            )
            event = IncidentEvent.objects.create(incident=incident, at=now, kind=Kind.OPENED, level=target,
                                                 value=value)
            _notify_after_commit(event)
    except IntegrityError:
        return None  # another checker opened it a moment ago
    return Transition(incident, Kind.OPENED)


def _move(current: Incident, target: str | None, *, value, message) -> Transition | None:
    now = timezone.now()
    if target is None:
        changes = {"resolved_at": now}
        event_kind = Kind.RESOLVED
    else:
        peak = target if rank(target) > rank(current.peak_level) else current.peak_level
        changes = {"level": target, "peak_level": peak, "message": message}
        event_kind = Kind.ESCALATED if rank(target) > rank(current.level) else Kind.DEESCALATED
    with transaction.atomic():
        claimed = Incident.objects.filter(pk=current.pk, level=current.level, resolved_at__isnull=True).update(
            value=value, updated_at=now, **changes
        )
        if claimed != 1:
            return None
        event = IncidentEvent.objects.create(incident=current, at=now, kind=event_kind, level=target or "",
                                             value=value)
        _notify_after_commit(event)
    return Transition(Incident.objects.get(pk=current.pk), event_kind)


def resolve_by_hand(incident: Incident, user, note: str) -> bool:
    """A person closes an incident, saying why; False if it was already resolved.

    The reading is not changed: if the subject is still over its threshold the
    next check opens a new incident, so a hand resolve never hides a live problem
    for long, and the history keeps who resolved the old one and why.
    """
    return _resolve(incident, user=user, note=note)


def resolve_unwatched(source: str, note: str) -> bool:
    """Resolve the open incident of a subject nobody watches any more (deleted, disabled, re-pathed)."""
    incident = Incident.objects.open().filter(source=source).first()
    return incident is not None and _resolve(incident, user=None, note=note)


def _resolve(incident: Incident, *, user, note: str) -> bool:
    now = timezone.now()
    with transaction.atomic():
        claimed = Incident.objects.filter(pk=incident.pk, resolved_at__isnull=True).update(
            resolved_at=now, updated_at=now)
        if not claimed:
            return False
        event = IncidentEvent.objects.create(incident=incident, at=now, kind=Kind.RESOLVED, user=user,
                                             note=note[:500])
        _notify_after_commit(event)
    return True


def acknowledge(incident: Incident, user) -> bool:
    """Record who acknowledged; acknowledging twice records it once."""
    now = timezone.now()
    with transaction.atomic():
        claimed = Incident.objects.filter(pk=incident.pk, acknowledged_at__isnull=True).update(
            acknowledged_at=now, acknowledged_by=user
        )
        if claimed:
            IncidentEvent.objects.create(incident=incident, at=now, kind=Kind.ACKNOWLEDGED, level=incident.level,
                                         user=user)
    return bool(claimed)


def record_action(source: str, note: str, value: float | None = None) -> IncidentEvent | None:
    """Add what was done about the incident of `source` (its open one, else its latest) to its events; not
    sent to anyone: the transitions are what people are told. None when the subject never had an incident."""
    incident = (Incident.objects.open().filter(source=source).first()
                or Incident.objects.filter(source=source).order_by("-opened_at").first())
    if incident is None:
        return None
    return IncidentEvent.objects.create(incident=incident, at=timezone.now(), kind=Kind.ACTION, value=value,
                                        note=note[:500])


def _notify_after_commit(event: IncidentEvent) -> None:
    # After the commit, so nobody is told about a transition that was rolled back; robust, so a
    # notification problem never fails the check that made the transition.
    transaction.on_commit(lambda: planner.event_committed(event.pk), robust=True)
