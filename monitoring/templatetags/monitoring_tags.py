from django import template

from ..telemetry.templating import size

register = template.Library()

# Templates use Django's |filesizeformat. monitoring/cleanup/run.py still imports gib for its plain-text run
# summaries; it is the same formatter (templating.size) until that module calls it directly.
gib = size


@register.filter
def level_for(fs, percent):
    """The level a reading sits at for fs, ignoring hysteresis (for colouring bars)."""
    if percent is None:
        return ""
    return fs.level_for(percent, None) or "ok"
