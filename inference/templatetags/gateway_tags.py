from django import template
from redis.exceptions import RedisError

from inference.gateway import stats

register = template.Library()


@register.inclusion_tag("inference/gateway_panel.html")
def gateway_panel():
    """The gateway's last hour: requests, errors, p50 latency and tokens per model and per caller."""
    try:
        return {"gateway": stats.summary(stats.last_hour())}
    except RedisError:  # the counters live in Redis only: the card says so rather than break the page
        return {"gateway": None, "unavailable": True}


@register.filter
def seconds_bound(value):
    """A histogram bucket's upper bound as a latency: "≤ 50 ms", "≤ 2.5 s"."""
    if value is None:
        return "–"
    if value == float("inf"):
        return "> 120 s"
    return f"≤ {value * 1000:g} ms" if value < 1 else f"≤ {value:g} s"
