"""glmadmin's own HTTP requests to an engine (vLLM's OpenAI server): /health, a one-token generation, /metrics.

The supervisor probes and drains through it, telemetry scrapes through it. The clients' requests the
gateway relays do not: they take the gateway's own pooled HTTP/1.1 client (gateway/upstream.py).

Is an engine serving? Not "is the process alive": vLLM can answer /health while its engine core is
dead or hung, so the liveness probe asks for one real token; /health is only asked while a model loads.
"""

import time
from dataclasses import dataclass
from functools import cache

import httpx
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from glmadmin.lib import redis

# What metrics_text() raises: a caller catches it without knowing which HTTP library is underneath.
HTTPError = httpx.HTTPError
HEALTH_TIMEOUT = 2  # seconds
IN_FLIGHT_TIMEOUT = 2  # seconds, for the supervisor's drain
IN_FLIGHT = ("vllm:num_requests_running", "vllm:num_requests_waiting")
GENERATION_TOKENS = "vllm:generation_tokens_total"
TOKENS_KEPT_SECONDS = 600  # only consecutive failed probes compare counters; this bounds a forgotten key


@dataclass(frozen=True)
class Probe:
    ok: bool
    latency_ms: float | None = None
    error: str = ""


def health(engine) -> bool:
    """The server's own /health: used while a model loads, when generation is not possible yet."""
    try:
        return _client().get(f"{engine.base_url}/health", timeout=HEALTH_TIMEOUT).status_code == 200
    except httpx.HTTPError:
        return False


def generate_one_token(engine) -> Probe:
    started = time.perf_counter()
    try:
        response = _client().post(
            f"{engine.base_url}/v1/completions",
            json={"model": engine.running("served_model_name"), "prompt": "ping", "max_tokens": 1, "temperature": 0},
            timeout=settings.ENGINE_PROBE_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        return Probe(False, error=f"{type(exc).__name__}: {exc}"[:200])
    latency = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        return Probe(False, latency, f"HTTP {response.status_code}: {response.text[:150]}")
    try:
        ok = bool(response.json()["choices"])
    except (ValueError, KeyError, TypeError):
        ok = False
    return Probe(ok, latency, "" if ok else "no completion in the answer")


def metrics_text(engine, timeout: float) -> str:
    """The engine's /metrics, in the Prometheus text format. Raises HTTPError, an error status included."""
    response = _client().get(f"{engine.base_url}/metrics", timeout=timeout)
    response.raise_for_status()
    return response.text


def metric_values(engine, timeout: float = IN_FLIGHT_TIMEOUT) -> dict[str, float] | None:
    """Sample name -> value summed over labels, or None if the engine does not answer."""
    try:
        text = metrics_text(engine, timeout)
    except httpx.HTTPError:
        return None
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def busy(engine) -> str:
    """What the engine is generating ("3 requests running", "41 tokens generated since the last probe"), or ""
    when its metrics show nothing flowing (or it does not answer them): a failed probe then counts as a failure.

    The token counter is compared with the one read at the previous probe if that failed too (kept in Redis,
    where every worker's supervisor step finds it; a probe that succeeds forgets it); requests can finish
    between two reads, so the counter tells what a snapshot of the running requests misses.
    """
    values = metric_values(engine)
    if values is None:
        return ""
    running = int(values.get("vllm:num_requests_running", 0))
    tokens = values.get(GENERATION_TOKENS)
    previous = None
    if tokens is not None:
        pipe = redis.client().pipeline()
        pipe.getset(_tokens_key(engine), repr(tokens))
        pipe.expire(_tokens_key(engine), TOKENS_KEPT_SECONDS)
        previous = pipe.execute()[0]
    if running > 0:
        return f"{running} request(s) running"
    if previous is not None and tokens > float(previous):
        return f"{tokens - float(previous):.0f} tokens generated since the previous failed probe"
    return ""


def probe_answered(engine) -> None:
    """A probe succeeded: the next failed one has no earlier failure to compare its token counter with."""
    redis.client().delete(_tokens_key(engine))


def _tokens_key(engine) -> str:
    return redis.key("engine-tokens", str(engine.pk), str(engine.pid))


def in_flight(engine) -> int:
    """Requests running or waiting; 0 when the engine no longer answers (nothing it could still finish)."""
    values = metric_values(engine)
    if values is None:
        return 0
    return int(sum(values.get(name, 0) for name in IN_FLIGHT))


@cache
def _client() -> httpx.Client:
    """One client per process, made on first use (after a fork), shared by threads (telemetry scrapes
    engines in parallel).

    httpx.get() builds a client, and with it a TLS context from the CA bundle, on every call (about 20 ms
    of CPU and a few MB churned each time); engines answer plain HTTP on a private address. No connection
    is kept: vLLM's server closes an idle one after 5 s, and a request sent on a connection it is closing
    fails, which would read as a failed probe or an engine with nothing in flight. Every request opens its
    own connection, as httpx.get() did.
    """
    return httpx.Client(verify=False, follow_redirects=False, limits=httpx.Limits(max_keepalive_connections=0))
