from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from prometheus_client import CONTENT_TYPE_LATEST

from glmadmin.context_processors import live_state
from inference.models import Engine

from . import dashboard as dashboard_cards
from .cleanup import service as cleanup_service
from .models import CleanupRun
from .telemetry import access as telemetry_access
from .telemetry import diagnose
from .telemetry import exporter as telemetry_exporter


def dashboard(request):
    # Every card is drawn by the function the live publish uses (monitoring/dashboard.py), from one state.
    current = live_state(request)["live"]
    return render(request, "monitoring/dashboard.html", {
        "cards": dashboard_cards.cards(current, request), "can": dashboard_cards.can(request.user)})


@require_GET
@permission_required("inference.change_engine", raise_exception=True)
def engine_diagnose(request, pk: int):
    """The memory diagnosis of one engine (issue 19), the same lines as `manage.py diagnose`. It reads this
    host's NVML and the engine's log, so an engine of another host is diagnosed there."""
    engine = get_object_or_404(Engine, pk=pk)
    here = engine.host == settings.GLMADMIN_HOST_NAME
    return render(request, "monitoring/diagnose.html", {
        "engine": engine, "rows": diagnose.diagnose(engine) if here else [], "here": here})


# --- cleanup: run now, synchronously, so the person who clicked sees the outcome at once ---

@require_POST
@permission_required("monitoring.add_cleanuprun", raise_exception=True)
def cleanup_now(request):
    return _cleanup(request, dry_run=False)


@require_POST
@permission_required("monitoring.add_cleanuprun", raise_exception=True)
def cleanup_dry_run(request):
    return _cleanup(request, dry_run=True)


def _cleanup(request, *, dry_run: bool):
    if not request.user.is_staff:
        raise PermissionDenied
    outcomes = cleanup_service.run_all(trigger=CleanupRun.Trigger.MANUAL, dry_run=dry_run, user=request.user)
    for outcome in outcomes:
        level = messages.WARNING if outcome.busy or (outcome.run and outcome.run.status != "done") else messages.SUCCESS
        messages.add_message(request, level, str(outcome).splitlines()[0])
    if not outcomes:
        messages.info(request, "No enabled cleanup or log policy.")
    return redirect(reverse("dashboard") + "#cleanup")


# --- Prometheus: no session (scrapers have none); a token, or loopback when no token is set ---

@login_not_required
@require_GET
def metrics(request):
    if not telemetry_access.allowed(request):
        response = HttpResponse("metrics need a bearer token (or a request from this machine when none is set)\n",
                                status=401 if settings.METRICS_TOKEN else 403, content_type="text/plain")
        if settings.METRICS_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(telemetry_exporter.render(), content_type=CONTENT_TYPE_LATEST)
