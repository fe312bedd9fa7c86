from django import template

from alerts import silences
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
