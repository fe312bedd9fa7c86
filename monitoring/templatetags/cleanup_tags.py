from django import template

from monitoring.cleanup.panel import panel

register = template.Library()


@register.inclusion_tag("monitoring/cleanup_panel.html", takes_context=True)
def cleanup_panel(context):
    """The dashboard's cleanup card (a tag, so the dashboard view needs no change)."""
    return {**panel(), "user": context.get("user"), "perms": context.get("perms"),
            "csrf_token": context.get("csrf_token")}


@register.filter
def words(reason: str) -> str:
    """A recorded reason as words: too_young -> too young."""
    return str(reason).replace("_", " ")
