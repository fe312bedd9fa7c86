from datetime import datetime

from django import template

register = template.Library()

DASH = "–"


@register.filter
def num(value, digits=0):
    """A reading with `digits` decimals, or a dash when the source could not give it (None)."""
    if value is None:
        return DASH
    return f"{float(value):.{int(digits)}f}"


@register.filter
def ms(seconds):
    """Seconds as milliseconds for latencies under 10 s: 0.083 -> 83 ms."""
    if seconds is None:
        return DASH
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


@register.filter
def iso_time(text):
    return datetime.fromisoformat(text) if text else None


@register.filter
def bar_level(percent):
    """The colour of a usage bar: calm until it is nearly full."""
    if percent is None:
        return ""
    return "red" if percent >= 97 else "orange" if percent >= 90 else "ok"
