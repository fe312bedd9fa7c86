"""Who may read /metrics: a scraper with the bearer token, or, when no token is set, this machine only."""

import hmac
from ipaddress import ip_address

from django.conf import settings


def allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    # A request relayed by a proxy on this machine arrives from loopback too: it is not trusted as local.
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        return ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False
