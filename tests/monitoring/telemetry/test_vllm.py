"""Sampling a real vLLM engine (CPU build, demo model): a real completion shows as TTFT and tokens/s."""

import httpx

from monitoring.telemetry import service
from monitoring.telemetry.rules import evaluate as rules
from tests.support.chat import MODEL, engine  # noqa: F401 - the package's engine (conftest.py)


def test_a_completion_shows_in_the_next_cycle(engine, monkeypatch):  # noqa: F811 - the fixture
    cycles = []
    monkeypatch.setattr(rules, "evaluate", cycles.append)
    before = service.sample()
    (reading,) = before.engines
    assert reading.metrics_error == "" and reading.ttft_p50 is None  # the first scrape has no window yet
    assert reading.kv_cache_usage is not None and reading.rss_bytes > 300 * 2**20  # API server + EngineCore
    response = httpx.post(f"{engine.base_url}/v1/completions",
                          json={"model": MODEL, "prompt": "hello", "max_tokens": 16, "ignore_eos": True},
                          timeout=60)
    assert response.json()["usage"]["completion_tokens"] == 16
    (after,) = service.sample().engines
    assert after.ttft_p50 is not None and 0 < after.ttft_p50 <= after.ttft_p95
    assert after.generation_tokens_per_s > 0
    assert after.requests_running == 0 and after.requests_waiting == 0
    (idle,) = service.sample().engines
    assert idle.ttft_p50 is None and idle.generation_tokens_per_s == 0  # the window moved on
    assert len(cycles) == 3 and before.gpu_status == "no GPU"
