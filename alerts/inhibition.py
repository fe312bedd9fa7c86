"""Which incident, if any, is the cause that keeps another one quiet (inhibition).

A full disk stops the engines on its host and slows what still runs: their failure and telemetry
incidents (time to first token, stuck engines, missing metrics) are echoes of the disk. While a disk
incident on a host is open and red, the transitions of that host's engine and telemetry incidents are
recorded and shown ("inhibited by ...") but sent to nobody: the operator gets the cause, not its echoes.
Once the disk is no longer red (resolved, or down to orange), an echo still open is sent once
(planner.release_held), as a silenced one is after its silence.

Resolves are never inhibited: they reach only channels that were told about the incident, and those
should learn that it is over.
"""

from .levels import Level
from .models import Incident, IncidentEvent

ECHO_KINDS = frozenset({Incident.Kind.ENGINE, Incident.Kind.TELEMETRY})


def causes() -> list[Incident]:
    """The incidents that inhibit now: open, red, real (not manage.py test_alert) disk incidents."""
    return list(Incident.objects.open().filter(kind=Incident.Kind.DISK, level=Level.RED, is_test=False)
                .order_by("opened_at", "pk"))


def cause_of(incident: Incident, among: list[Incident] | None = None) -> Incident | None:
    """The open red disk incident on `incident`'s host that inhibits it, or None. `among`: causes(), read
    once by a caller that asks about many incidents."""
    if incident.kind not in ECHO_KINDS:
        return None
    return next((cause for cause in (causes() if among is None else among) if cause.host == incident.host), None)


def holds(event: IncidentEvent, among: list[Incident] | None = None) -> Incident | None:
    """The cause that keeps this transition from being sent, or None (a resolve is always sent)."""
    if event.kind == IncidentEvent.Kind.RESOLVED:
        return None
    return cause_of(event.incident, among)


def inhibited(among: list[Incident] | None = None) -> list[tuple[Incident, Incident]]:
    """(echo, cause) for every open incident inhibited now, for the dashboard and /metrics."""
    found = causes() if among is None else among
    if not found:
        return []
    hosts = {cause.host for cause in found}
    echoes = Incident.objects.open().filter(kind__in=ECHO_KINDS, host__in=hosts).order_by("-opened_at")
    return [(echo, cause_of(echo, found)) for echo in echoes]
