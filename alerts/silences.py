"""Which silence, if any, keeps an incident quiet. The planner asks before every message, and tells
about incidents still open once their silences have ended (planner.release_silenced)."""

from datetime import datetime

from .models import Incident, Silence


def covering(incident: Incident, level: str | None = None, at: datetime | None = None) -> Silence | None:
    """The active silence that matches `incident` (at `level`), the one that ends last; None if none does."""
    matching = [s for s in Silence.objects.active(at) if s.matches(incident, level)]
    return max(matching, key=lambda s: s.ends_at, default=None)


def active() -> list[Silence]:
    return list(Silence.objects.active().select_related("created_by").order_by("ends_at"))
