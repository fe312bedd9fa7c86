from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from glmadmin import audit

from . import control
from .models import Engine

ACTIONS = {
    "restart": (control.request_restart, "Restart requested"),
    "stop": (control.request_stop, "Stop requested"),
    "start": (control.request_start, "Start requested"),
}


@require_POST
@permission_required("inference.change_engine", raise_exception=True)
def engine_action(request, pk, action):
    if action not in ACTIONS:
        raise Http404(f"unknown engine action {action!r}")
    engine = get_object_or_404(Engine, pk=pk)
    if action == "restart" and engine.soft_restart:
        # In place on the engine's host (its sleep and wake-up endpoints listen there only); a full restart
        # where a step fails.
        control.soft_restart_later(engine)
        audit.record(request.user, engine, "Soft restart requested from the dashboard.")
        messages.success(request, f"Soft restart requested for engine {engine.name} (a full restart if it fails).")
        return redirect("dashboard")
    request_change, done = ACTIONS[action]
    request_change(engine)
    control.kick(engine)
    audit.record(request.user, engine, f"{done} from the dashboard.")
    messages.success(request, f"{done} for engine {engine.name}.")
    return redirect("dashboard")
