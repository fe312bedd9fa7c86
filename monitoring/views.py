from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from . import live
from .history import disk_sparklines
from .incidents import acknowledge as acknowledge_incident
from .models import Incident, WatchedFilesystem


def dashboard(request):
    filesystems = list(WatchedFilesystem.objects.all())
    sparklines = disk_sparklines(filesystems)
    for fs in filesystems:
        fs.sparkline = sparklines.get(fs.pk, "")
    history = Incident.objects.select_related("acknowledged_by").prefetch_related("events")[:50]
    return render(request, "monitoring/dashboard.html", {
        "filesystems": filesystems,
        "open_incidents": Incident.objects.open().select_related("acknowledged_by"),
        "history": history,
    })


@require_POST
@permission_required("monitoring.change_incident", raise_exception=True)
def acknowledge(request, pk):
    incident = get_object_or_404(Incident, pk=pk)
    if acknowledge_incident(incident, request.user):
        live.publish(force=True)
        messages.success(request, f"Acknowledged: {incident.title}")
    else:
        messages.info(request, f"Already acknowledged: {incident.title}")
    return redirect("dashboard")
