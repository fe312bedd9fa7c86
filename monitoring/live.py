"""The live state every page shows (status bar, banners), and its publisher.

Every websocket message is the whole state, never a delta: a browser that
missed messages (channels_redis drops them for a full channel) is right again
with the next one, and a (re)connecting browser first gets the current state.
The HTML fragments are rendered here by the same templates the pages use, so
there is one way to draw a banner.
"""

import hashlib
import json
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db.models import Sum
from django.template.loader import render_to_string

from glmadmin.lib import redis as rd
from inference.status import engine_rows, engine_summary

from . import admission
from .models import CleanupPolicy, Incident, WatchedFilesystem
from .telemetry import panel as telemetry_panel

GROUP = "live"


def state() -> dict:
    filesystems = list(WatchedFilesystem.objects.filter(enabled=True))
    incidents = list(Incident.objects.open().order_by("-opened_at"))
    engines = engine_rows()  # one query serves the status bar and the engine cards
    readable = [fs for fs in filesystems if fs.last_percent is not None]
    fullest = max(readable, key=lambda fs: fs.last_percent, default=None)
    return {
        # The status bar shows the fullest watched disk: that is the one about to hurt.
        "disk": fullest and {"percent": round(fullest.last_percent), "label": fullest.label, "path": fullest.path},
        # Sizes stored by cleanup runs and the periodic measurement: a page view never walks the disk.
        "cache_bytes": CleanupPolicy.objects.filter(enabled=True, engine_cache=True).aggregate(
            total=Sum("last_size_bytes"))["total"] or 0,
        "engine": engine_summary(engines),
        "engines": [{"name": name, "state": state} for name, state, _ in engines],
        "admission": admission.from_incidents(incidents).as_dict(),
        "incidents": [
            {"id": i.pk, "level": i.level, "title": i.title, "message": i.message, "is_test": i.is_test,
             "opened_at": i.opened_at.isoformat()}
            for i in incidents
        ],
        "filesystems": [
            {"id": fs.pk, "percent": None if fs.last_percent is None else round(fs.last_percent)} for fs in filesystems
        ],
        # GPUs, engine metrics and charts: read from what the sampler left in Redis, never measured here.
        "telemetry": telemetry_panel.state(),
    }


def message(current: dict | None = None) -> dict:
    current = state() if current is None else current
    return {
        "type": "state",
        "state": current,
        "html": {
            "statusbar": render_to_string("partials/statusbar.html", {"live": current}),
            "alerts": render_to_string("partials/alerts.html", {"live": current}),
            "telemetry": render_to_string("partials/telemetry.html", telemetry_panel.context(current["telemetry"])),
        },
    }


def publish(force: bool = False) -> bool:
    """Send the current state to every open page, if it changed since the last send."""
    current = state()
    digest = hashlib.sha256(json.dumps(current, sort_keys=True).encode()).hexdigest()
    previous = rd.client().set(rd.key("live", "digest"), digest, get=True)
    if previous == digest and not force:
        return False
    # Encoded once here rather than once per open page by each consumer.
    text = json.dumps({**message(current), "published_at": time.time()})
    async_to_sync(get_channel_layer().group_send)(GROUP, {"type": "live.state", "text": text})
    return True
