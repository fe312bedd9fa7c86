from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from glmadmin import audit

from . import control, engine_page
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
        return _back(request, engine)
    request_change, done = ACTIONS[action]
    request_change(engine)
    control.kick(engine)
    audit.record(request.user, engine, f"{done} from the dashboard.")
    messages.success(request, f"{done} for engine {engine.name}.")
    return _back(request, engine)


def _back(request, engine):
    # To the page the button was on: the engine's own page says so in the form, the dashboard does not.
    page = reverse("engine-detail", args=[engine.pk])
    return redirect(page if request.POST.get("next") == page else "dashboard")


@require_GET
def engine_detail(request, pk):
    # Signed-in users only (LoginRequiredMiddleware); the actions and the log need permissions of their own.
    engine = get_object_or_404(Engine, pk=pk)
    return render(request, "inference/engine.html", engine_page.context(engine, request.user))


@require_GET
def engine_log(request, pk):
    """The page's periodic refresh: the log's last lines and the engine's state, as JSON."""
    engine = get_object_or_404(Engine, pk=pk)
    if not engine_page.may_read_log(request.user):
        raise PermissionDenied
    return JsonResponse({"state": engine.state, "state_label": engine.get_state_display(),
                         "reason": engine.state_reason, "pid": engine.pid, **engine_page.log_tail(engine)})
