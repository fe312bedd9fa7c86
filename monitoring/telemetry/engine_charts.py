"""The engine page's metrics (inference.engine_page.add_section): the dashboard's history charts, only this
engine's line of each engine chart, read from the charts the sampler keeps in Redis (no query of the series)."""

from django.template.loader import render_to_string

from . import charts

ENGINE_CHARTS = ("kv_cache", "ttft_p95", "tokens_per_s")


def engine_charts(engine) -> list[dict]:
    found = []
    for range_name, range_charts in charts.cached().items():
        for chart in range_charts:
            if chart.get("key") not in ENGINE_CHARTS:
                continue
            lines = [line for line in chart.get("lines", ()) if line.get("label") == engine.name]
            found.append({**chart, "range": range_name, "lines": lines})
    return found


def render(engine) -> str:
    return render_to_string("monitoring/engine_charts.html", {"engine": engine, "charts": engine_charts(engine)})
