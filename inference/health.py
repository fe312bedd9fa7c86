"""Is an engine serving? Not "is the process alive": a one-token generation.

vLLM can answer /health while its engine core is dead or hung, so the
liveness probe asks for one real token.
"""

import time
from dataclasses import dataclass

import httpx
from django.conf import settings


@dataclass(frozen=True)
class Probe:
    ok: bool
    latency_ms: float | None = None
    error: str = ""


def health(engine) -> bool:
    """The server's own /health: used while a model loads, when generation is not possible yet."""
    try:
        return httpx.get(f"{engine.base_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def generate_one_token(engine) -> Probe:
    started = time.perf_counter()
    try:
        response = httpx.post(
            f"{engine.base_url}/v1/completions",
            json={"model": engine.served_model_name, "prompt": "ping", "max_tokens": 1, "temperature": 0},
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
