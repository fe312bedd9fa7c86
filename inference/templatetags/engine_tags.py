from django import template
from django.utils import timezone

from inference.models import Engine

register = template.Library()


@register.inclusion_tag("inference/engines_panel.html", takes_context=True)
def engines_panel(context):
    return {"engines": list(Engine.objects.all()), "now": timezone.now(), "perms": context.get("perms"),
            "csrf_token": context.get("csrf_token")}
