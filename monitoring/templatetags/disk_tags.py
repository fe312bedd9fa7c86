import time

from django import template

from .. import disk_pending

register = template.Library()


@register.simple_tag
def disk_pending_of(fs):
    """The level fs's readings reached but have not held for its duration yet, or None."""
    return disk_pending.current([fs], time.time()).get(fs.pk)


@register.simple_tag
def pending_text(pending, now=None):
    """ "orange pending for 12 s of 30 s" (the live page ticks it on: static/glmadmin/filesystems.js)."""
    held = pending.held(time.time() if now is None else now)
    return f"{pending.level} pending for {min(held, pending.for_seconds):.0f} s of {pending.for_seconds} s"
