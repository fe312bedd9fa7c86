"""Which silence, if any, keeps an incident quiet. The planner asks before every message, and tells
about incidents still open once their silences have ended (planner.release_held)."""

from datetime import datetime

from django.utils import timezone

from .models import Incident, Silence


def covering(incident: Incident, level: str | None = None, at: datetime | None = None,
             among: list[Silence] | None = None) -> Silence | None:
    """The active silence that matches `incident` (at `level`); None if none does. `among`: the active
    silences, read once by a caller that asks about many incidents."""
    return next((s for s in (active(at) if among is None else among) if s.matches(incident, level)), None)


def active(at: datetime | None = None) -> list[Silence]:
    """The silences and maintenance windows in force at `at` (now), the one-off ones first."""
    at = at or timezone.now()
    found = Silence.objects.candidates(at).select_related("created_by").order_by("daily", "-ends_at")
    return [silence for silence in found if silence.is_active(at)]
