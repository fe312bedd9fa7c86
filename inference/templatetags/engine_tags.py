from django import template
from django.utils import timezone

from glmadmin import audit
from inference.models import Engine
from inference.restart_metrics import last_full_restart_seconds

register = template.Library()


@register.inclusion_tag("inference/engines_panel.html", takes_context=True)
def engines_panel(context):
    engines = list(Engine.objects.all())
    trail = audit.recent(Engine, [engine.pk for engine in engines], per_object=5)  # one query for every engine
    for engine in engines:
        engine.audit_trail = trail.get(str(engine.pk), [])
        engine.gpu_health = _gpu_health(context.get("live"), engine)
        engine.last_full_restart_seconds = last_full_restart_seconds(engine.pk) if engine.restarts else None
    return {"engines": engines, "now": timezone.now(), "perms": context.get("perms"),
            "csrf_token": context.get("csrf_token")}


def _gpu_health(live, engine: Engine) -> list[dict]:
    """The health of the engine's GPUs that are not ok, from the page's live state: the telemetry part
    (monitoring's, added to the hub) lists each host's GPUs' health; without it there is nothing to show."""
    hosts = ((live or {}).get("telemetry") or {}).get("hosts") or ()
    health = next((h.get("health") or () for h in hosts if h.get("name") == engine.host), ())
    return [h for h in health if h.get("index") in engine.gpus and h.get("state") != "ok"]
