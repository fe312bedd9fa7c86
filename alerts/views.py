from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from glmadmin import live

from . import admission
from .incidents import acknowledge as acknowledge_incident
from .incidents import resolve_by_hand
from .models import Incident


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
