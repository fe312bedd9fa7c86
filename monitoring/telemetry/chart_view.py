"""What a history chart shows besides its lines: time and value axes, the thresholds that raise an alert,
and the numbers behind each line for the values on hover (charts.js).

Drawn per publish from the charts the sampler keeps in Redis (charts.cached) and two small reads of the
thresholds, so a changed threshold shows at once, without waiting for the next day chart.
"""

import json
from datetime import datetime

from django.utils import timezone

from ..models import TelemetryRules, WatchedFilesystem

TICK_SECONDS = {"hour": 15 * 60, "day": 4 * 3600}


def thresholds() -> dict[str, list[dict]]:
    """metric key -> its alert thresholds, [{value, label, level}]."""
    rules = TelemetryRules.objects.filter(pk=1).first() or TelemetryRules()
    out: dict[str, list[dict]] = {}
    if rules.gpu_memory_enabled and rules.gpu_memory_percent is not None:
        out["gpu_memory"] = [{"value": rules.gpu_memory_percent, "label": "alert", "level": "orange"}]
    if rules.kv_cache_enabled:
        out["kv_cache"] = [{"value": rules.kv_cache_percent, "label": "alert", "level": "orange"}]
    if rules.ttft_enabled:
        out["ttft_p95"] = [{"value": rules.ttft_p95_seconds, "label": "alert", "level": "orange"}]
    disk: dict[tuple[str, float], None] = {}
    for fs in WatchedFilesystem.objects.filter(enabled=True):
        for level, percent in fs.thresholds().items():
            disk[(level, percent)] = None  # each distinct line once, however many filesystems share it
    out["disk"] = [{"value": percent, "label": level, "level": level} for level, percent in disk]
    return out


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "s":  # latencies read in milliseconds below a second
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
    if unit == "%":
        return f"{value:.0f} %"
    return f"{value:.3g} {unit}"


def decorate(charts: dict[str, list[dict]], limits: dict[str, list[dict]] | None = None) -> dict:
    """The cached charts with what the template draws around their lines."""
    limits = thresholds() if limits is None else limits
    return {range_name: [_decorate(chart, range_name, limits.get(chart.get("key"), ())) for chart in range_charts]
            for range_name, range_charts in charts.items()}


def _decorate(chart: dict, range_name: str, limits) -> dict:
    top = chart.get("max") or 1.0
    start, span, buckets = chart.get("start"), chart.get("span"), chart.get("buckets")
    out = {**chart,
           "yticks": [{"top": 100 - 100 * f, "y": 60 - 60 * f, "label": fmt(top * f, chart["unit"])}
                      for f in (0.0, 0.5, 1.0)],
           "thresholds": [{**t, "top": 100 - 100 * t["value"] / top, "y": 60 - 60 * t["value"] / top,
                           "text": f"{t['label']} {fmt(t['value'], chart['unit'])}"}
                          for t in limits if 0 < t["value"] <= top],
           "above": [f"{t['label']} above {fmt(t['value'], chart['unit'])}" for t in limits if t["value"] > top],
           "legend": [{**line, "last_text": fmt(line.get("last"), chart["unit"])} for line in chart.get("lines", ())],
           "xticks": [], "series": ""}
    if start is None or not span or not buckets:  # charts cached before axes existed: drawn without them
        return out
    step = TICK_SECONDS[range_name] if range_name in TICK_SECONDS else span / 4
    first = (start // step + 1) * step
    ticks = []
    at = first
    while at < start + span:
        x = ((at - start) / span * buckets - 0.5) / (buckets - 1)
        if 0.04 < x < 0.96:  # a label at the very edge would spill out of the chart
            local = timezone.localtime(datetime.fromtimestamp(at, tz=timezone.get_current_timezone()))
            ticks.append({"left": 100 * x, "x": 240 * x, "label": local.strftime("%H:%M")})
        at += step
    offset = timezone.localtime(datetime.fromtimestamp(start, tz=timezone.get_current_timezone())).utcoffset()
    out["xticks"] = ticks
    out["series"] = json.dumps({
        "start": start, "span": span, "buckets": buckets, "unit": chart["unit"],
        "tz": offset.total_seconds() if offset else 0,
        "lines": [{"label": line["label"], "colour": line["colour"], "values": line.get("values", [])}
                  for line in chart.get("lines", ())]}, separators=(",", ":"))
    return out
