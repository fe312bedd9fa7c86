"""Sampling a real vLLM engine (CPU build, demo model): a real completion shows as TTFT and tokens/s."""

import httpx
import pytest

from glmadmin.lib import processes
from inference import demo
from inference.models import Engine
from inference.models import EngineState as S
from monitoring.telemetry import service
from monitoring.telemetry.rules import evaluate as rules
from tests.support.engines import engine_processes, require_runtime, step_until

PORT = 8161
STARTUP = 420  # the 2-core machine is shared: startup takes 45 s alone, minutes under load


@pytest.fixture
def engine(transactional_db, tmp_path):
    require_runtime()
    model = demo.make_model(tmp_path / "demo")
    engine = Engine.objects.create(name="telemetry-demo", port=PORT, model=str(model), served_model_name="demo",
                                   enforce_eager=True, shutdown_timeout=5, max_model_len=512,
                                   extra_args=demo.ENGINE_ARGS)
    yield engine
    for proc in engine_processes(PORT):
        segments = processes.shared_memory(proc.pid)
        processes.kill_group(proc.pid)
        processes.remove_shared_memory(segments)


def test_a_completion_shows_in_the_next_cycle(engine, monkeypatch):
    cycles = []
    monkeypatch.setattr(rules, "evaluate", cycles.append)
    step_until(engine, lambda e: e.state == S.READY, STARTUP, "ready")
    before = service.sample()
    (reading,) = before.engines
    assert reading.metrics_error == "" and reading.ttft_p50 is None  # the first scrape has no window yet
    assert reading.kv_cache_usage is not None and reading.rss_bytes > 300 * 2**20  # API server + EngineCore
    response = httpx.post(f"http://127.0.0.1:{PORT}/v1/completions",
                          json={"model": "demo", "prompt": "hello", "max_tokens": 16, "ignore_eos": True},
                          timeout=60)
    assert response.json()["usage"]["completion_tokens"] == 16
    (after,) = service.sample().engines
    assert after.ttft_p50 is not None and 0 < after.ttft_p50 <= after.ttft_p95
    assert after.generation_tokens_per_s > 0
    assert after.requests_running == 0 and after.requests_waiting == 0
    (idle,) = service.sample().engines
    assert idle.ttft_p50 is None and idle.generation_tokens_per_s == 0  # the window moved on
    assert len(cycles) == 3 and before.gpu_status == "no GPU"
