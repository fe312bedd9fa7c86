from django import template

register = template.Library()


@register.filter
def gib(num_bytes):
    """Bytes as a short human size: 1.4 GB, 820 MB (powers of 1024, like df -h)."""
    if num_bytes is None:
        return "–"
    value = float(num_bytes)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1024
    return ""


@register.filter
def level_for(fs, percent):
    """The level a reading sits at for fs, ignoring hysteresis (for colouring bars)."""
    if percent is None:
        return ""
    return fs.level_for(percent, None) or "ok"
