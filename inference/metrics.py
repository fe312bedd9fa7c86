"""Reading an engine's Prometheus /metrics."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

IN_FLIGHT = ("vllm:num_requests_running", "vllm:num_requests_waiting")


def scrape(engine, timeout: float = 2) -> dict[str, float] | None:
    """Sample name -> value summed over labels, or None if the engine does not answer."""
    try:
        response = httpx.get(f"{engine.base_url}/metrics", timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def in_flight(engine) -> int:
    """Requests running or waiting; 0 when the engine no longer answers (nothing it could still finish)."""
    values = scrape(engine)
    if values is None:
        return 0
    return int(sum(values.get(name, 0) for name in IN_FLIGHT))
