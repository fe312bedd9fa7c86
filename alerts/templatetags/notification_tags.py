from django import template

from alerts import inhibition, quiet, silences
from alerts.notifications.panel import panel

register = template.Library()


@register.simple_tag
def notifications_panel():
    """The dashboard's notifications card data (a tag, so the dashboard view needs no change)."""
    return panel()


@register.simple_tag
def quiet_reasons():
    """The active silences and the inhibiting incidents, read once for a list of incidents (two queries, not two
    per row): pass them to silence_of / inhibitor_of."""
    return quiet.reasons()


@register.simple_tag
def silence_of(incident, quiet=None):
    """The active silence that keeps `incident` quiet, or None. `quiet`: quiet_reasons(), when read once."""
    return silences.covering(incident, among=quiet["silences"] if quiet else None)


@register.simple_tag
def inhibitor_of(incident, quiet=None):
    """The open red disk incident on `incident`'s host that keeps it quiet (inhibition), or None."""
    return inhibition.cause_of(incident, among=quiet["causes"] if quiet else None)
