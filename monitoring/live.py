"""This app's part of the live page state (glmadmin/live.py): disks, the engine cache and telemetry."""

import time

from django.db.models import Sum

from . import disk_pending
from .models import CleanupPolicy, WatchedFilesystem
from .telemetry import panel as telemetry_panel

# Read from the database.
DISKS_FALLBACK = {"disk": None, "cache_bytes": None, "filesystems": []}
# Read from Redis (what the samplers left): while it is down the page says so and shows the rest.
TELEMETRY_FALLBACK = {"telemetry": {"sampled": False, "unavailable": True}}


def disks() -> dict:
    filesystems = list(WatchedFilesystem.objects.filter(enabled=True))
    readable = [fs for fs in filesystems if fs.last_percent is not None]
    fullest = max(readable, key=lambda fs: fs.last_percent, default=None)
    # A level held back by its "for" duration (Redis; none while Redis is down): it changes when a level
    # starts or stops pending, not with every check, so it costs no extra publishes.
    pending = disk_pending.current(filesystems, time.time())
    return {
        # The status bar shows the fullest watched disk: that is the one about to hurt.
        "disk": fullest and {"percent": round(fullest.last_percent), "label": fullest.label, "path": fullest.path},
        # Sizes stored by cleanup runs and the periodic measurement: a page view never walks the disk.
        "cache_bytes": CleanupPolicy.objects.filter(enabled=True, engine_cache=True).aggregate(
            total=Sum("last_size_bytes"))["total"] or 0,
        "filesystems": [
            {"id": fs.pk, "percent": None if fs.last_percent is None else round(fs.last_percent),
             "error": fs.last_error, "pending": pending[fs.pk].as_json() if fs.pk in pending else None}
            for fs in filesystems
        ],
    }


def telemetry() -> dict:
    # GPUs, engine metrics and charts: read from what the sampler left in Redis, never measured here.
    return {"telemetry": telemetry_panel.state()}
