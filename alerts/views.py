from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_POST

from glmadmin import live

from . import admission
from .incidents import acknowledge as acknowledge_incident
from .incidents import resolve_by_hand
from .models import Incident, Silence

# How long a silence made from an incident row lasts: the choices of its form, in hours.
SILENCE_HOURS = (1, 2, 8, 24)


@require_POST
@permission_required("alerts.change_incident", raise_exception=True)
def acknowledge(request, pk):
    incident = get_object_or_404(Incident, pk=pk)
    if acknowledge_incident(incident, request.user):
        live.publish(force=True)
        messages.success(request, f"Acknowledged: {incident.title}")
    else:
        messages.info(request, f"Already acknowledged: {incident.title}")
    return redirect("dashboard")


@require_POST
@permission_required("alerts.change_incident", raise_exception=True)
def resolve(request, pk):
    incident = get_object_or_404(Incident, pk=pk)
    note = request.POST.get("note", "").strip()
    if not note:
        messages.error(request, f"Say why you resolve “{incident.title}”: the note is kept in its history.")
    elif resolve_by_hand(incident, request.user, note):
        admission.sync()  # a resolved red lifts the pause on new requests at once
        live.publish(force=True)
        messages.success(request, f"Resolved: {incident.title}")
    else:
        messages.info(request, f"Already resolved: {incident.title}")
    return redirect("dashboard")


@require_POST
@permission_required("alerts.add_silence", raise_exception=True)
def silence(request, pk):
    """Silence an incident's subject for a while, from its row: one click and a reason."""
    incident = get_object_or_404(Incident, pk=pk)
    reason = request.POST.get("reason", "").strip()
    try:
        hours = int(request.POST.get("hours", ""))
    except ValueError:
        hours = 0
    if not reason or hours not in SILENCE_HOURS:
        choices = ", ".join(map(str, SILENCE_HOURS))
        messages.error(request, f"Say why you silence “{incident.title}”, and for how long ({choices} h).")
        return redirect("dashboard")
    made = Silence.objects.create(source=incident.source, ends_at=timezone.now() + timedelta(hours=hours),
                                  reason=reason[:300], created_by=request.user)
    messages.success(request, f"Silenced {incident.source} until {timezone.localtime(made.ends_at):%H:%M}: "
                              "incidents are still recorded and shown, nobody is told.")
    return redirect("dashboard")
