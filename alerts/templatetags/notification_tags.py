from django import template

from alerts import inhibition, silences
from alerts.notifications.panel import panel

register = template.Library()


@register.simple_tag
def notifications_panel():
    """The dashboard's notifications card data (a tag, so the dashboard view needs no change)."""
    return panel()


@register.simple_tag
def silence_of(incident):
    """The active silence that keeps `incident` quiet, or None."""
    return silences.covering(incident)


@register.simple_tag
def inhibitor_of(incident):
    """The open red disk incident on `incident`'s host that keeps it quiet (inhibition), or None."""
    return inhibition.cause_of(incident)
