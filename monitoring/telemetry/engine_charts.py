"""The engine page's metrics (inference.engine_page.add_section): the dashboard's history charts (KV cache, TTFT,
tokens/s), with only this engine's line, axes, thresholds and values on hover as there (chart_view, chart.html,
charts.js). Read from the charts the sampler keeps in Redis: no query of the series."""

from django.template.loader import render_to_string

from . import chart_view, charts

ENGINE_CHARTS = ("kv_cache", "ttft_p95", "tokens_per_s")


def engine_charts(engine) -> dict[str, list[dict]]:
    """range name -> this engine's charts, each with its own line only."""
    found: dict[str, list[dict]] = {}
    for range_name, range_charts in charts.cached().items():
        for chart in range_charts:
            if chart.get("key") in ENGINE_CHARTS:
                lines = [line for line in chart.get("lines", ()) if line.get("label") == engine.name]
                found.setdefault(range_name, []).append({**chart, "lines": lines})
    return chart_view.decorate(found) if any(found.values()) else {}


def render(engine) -> str:
    return render_to_string("monitoring/engine_charts.html", {"engine": engine, "charts": engine_charts(engine)})
