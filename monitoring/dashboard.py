"""The dashboard's cards: each one rendered by one function, for the first page view and for every live publish.

There is one way to draw a card, so no two parts of the page can disagree: the
view renders every card with the request (its user's permissions and CSRF token),
and the live hub renders the same cards once per publish for every open
dashboard (glmadmin/live.py, page "dashboard"). Live renders are shared by all
viewers, so they are drawn as for a user who may do everything; each action
carries the permission it needs (data-needs) and live.js drops those the
viewer lacks and puts in the viewer's CSRF token. The server checks every
action again on POST: hiding a button is only a courtesy.

Bounded: every list a card shows has a fixed length, and a card reads the
database or Redis once per publish whatever the number of open pages.
"""

from collections.abc import Callable
from types import SimpleNamespace

from django.db.models import Prefetch
from django.template.loader import render_to_string

from alerts.models import Incident, IncidentEvent
from inference.models import Engine

from .models import WatchedFilesystem
from .telemetry import charts as telemetry_charts
from .telemetry import panel as telemetry_panel

PAGE = "dashboard"
HISTORY_ROWS = 20
# The permissions the cards' actions need (data-needs), "staff" for is_staff: the page tells live.js which
# of them its viewer has.
NEEDS = ("alerts.change_incident", "alerts.add_silence", "inference.change_engine", "inference.add_engine",
         "monitoring.add_cleanuprun", "monitoring.change_watchedfilesystem", "staff")


class _Everything:
    """`perms` in a live render: every perms.app.codename is true (data-needs marks what it gates)."""

    def __getitem__(self, name):
        return self

    def __contains__(self, name):
        return True

    def __bool__(self):
        return True


# A stand-in CSRF token: live.js puts the viewer's own token in its place.
LIVE_VIEWER = {"perms": _Everything(), "user": SimpleNamespace(is_staff=True, is_authenticated=True),
               "csrf_token": "live-placeholder"}


def _filesystems(current: dict) -> dict:
    filesystems = list(WatchedFilesystem.objects.all())
    sparklines = telemetry_charts.disk_sparklines(filesystems)
    for fs in filesystems:
        fs.sparkline = sparklines.get(fs.pk, "")
    return {"filesystems": filesystems}


def _overview(current: dict) -> dict:
    engines = list(Engine.objects.order_by("name"))
    filesystems = list(WatchedFilesystem.objects.filter(enabled=True))
    return {"engines": engines, "filesystems": filesystems}


def _incidents(current: dict) -> dict:
    return {"open_incidents": list(Incident.objects.open().select_related("acknowledged_by"))}


def _history(current: dict) -> dict:
    events = IncidentEvent.objects.select_related("user").order_by("at", "pk")
    return {"history": list(Incident.objects.select_related("acknowledged_by")
                            .prefetch_related(Prefetch("events", queryset=events))[:HISTORY_ROWS])}


def _telemetry(current: dict) -> dict:
    return telemetry_panel.context(current["telemetry"])


def _nothing(current: dict) -> dict:
    return {}


# name -> (template, what it reads besides the live state); in page order.
CARDS: dict[str, tuple[str, Callable[[dict], dict]]] = {
    "overview": ("monitoring/cards/overview.html", _overview),
    "incidents": ("monitoring/cards/incidents.html", _incidents),
    "engines": ("monitoring/cards/engines.html", _nothing),
    "filesystems": ("monitoring/cards/filesystems.html", _filesystems),
    "telemetry": ("partials/telemetry.html", _telemetry),
    "notifications": ("alerts/notifications_panel.html", _nothing),
    "cleanup": ("monitoring/cards/cleanup.html", _nothing),
    "gateway": ("monitoring/cards/gateway.html", _nothing),
    "history": ("monitoring/cards/history.html", _history),
}


def render(name: str, current: dict, request=None) -> str:
    """One card, for `request`'s user, or (no request) for the live publish every dashboard shares."""
    template, read = CARDS[name]
    context = {"live": current, **read(current)}
    if request is None:
        return render_to_string(template, {**LIVE_VIEWER, **context})
    return render_to_string(template, context, request=request)


def cards(current: dict, request) -> dict[str, str]:
    return {name: render(name, current, request) for name in CARDS}


def can(user) -> str:
    """What of NEEDS the user has, as the page's data-can (space separated)."""
    return " ".join(need for need in NEEDS if (user.is_staff if need == "staff" else user.has_perm(need)))


def register(hub) -> None:
    for name in CARDS:
        hub.add_fragment(name, lambda current, name=name: render(name, current), page=PAGE)
