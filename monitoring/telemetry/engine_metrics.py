"""An engine's vLLM /metrics turned into the numbers of one window (between two scrapes).

Counters and histograms only grow while an engine lives, so a rate or a
percentile "now" is the difference between this scrape and the previous one,
not the totals since the engine started. A counter that went backwards means
the engine restarted: that window is thrown away and the next starts here.
"""

import math
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

TTFT = "vllm:time_to_first_token_seconds"
GENERATION_TOKENS = "vllm:generation_tokens_total"
PREFIX_HITS = "vllm:prefix_cache_hits_total"
PREFIX_QUERIES = "vllm:prefix_cache_queries_total"
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")  # the older name on vLLM < 0.10
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
COUNTERS = (GENERATION_TOKENS, PREFIX_HITS, PREFIX_QUERIES, f"{TTFT}_count")
# The families read here: vLLM writes some 600 lines, of which these are about 30.
FAMILIES = (TTFT, "vllm:generation_tokens", "vllm:prefix_cache_hits", "vllm:prefix_cache_queries", *KV_CACHE,
            RUNNING, WAITING)


@dataclass(frozen=True)
class Scrape:
    """One /metrics answer: sample values summed over labels (all model names, all engines of a DP group)."""

    at: float  # time.time() of the scrape
    values: dict[str, float]
    ttft_buckets: dict[float, float] = field(default_factory=dict)  # upper bound "le" -> cumulative count

    def as_json(self) -> dict:
        return {"at": self.at, "values": self.values,
                "buckets": [[_le_text(le), count] for le, count in sorted(self.ttft_buckets.items())]}

    @classmethod
    def from_json(cls, data: dict) -> "Scrape":
        return cls(data["at"], data["values"], {float(le): count for le, count in data["buckets"]})


@dataclass(frozen=True)
class Window:
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    generation_tokens_per_s: float | None = None
    prefix_cache_hit_rate: float | None = None
    restarted: bool = False


def parse(text: str, at: float) -> Scrape:
    """Raises ValueError on text that is not the Prometheus exposition format."""
    values: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(_wanted_lines(text)):
        for sample in family.samples:
            if sample.name == f"{TTFT}_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
            else:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return Scrape(at, values, buckets)


def _wanted_lines(text: str) -> str:
    """Only the lines of the families used: parsing the rest costs most of a cycle's CPU, for nothing."""
    kept = []
    for line in text.splitlines():
        name = line.split(maxsplit=3)[2] if line.startswith("#") and line.count(" ") >= 2 else line
        # A family's samples carry suffixes (_total, _bucket, ...); its name is followed by one of these.
        if name.startswith(FAMILIES) and name[len(_family(name)):][:1] in ("", "_", "{", " "):
            kept.append(line)
    return "\n".join(kept) + "\n"


def _family(name: str) -> str:
    return next(f for f in FAMILIES if name.startswith(f))


def gauges(scrape: Scrape) -> dict[str, float | None]:
    kv = next((scrape.values[name] for name in KV_CACHE if name in scrape.values), None)
    return {
        "kv_cache_usage": None if kv is None else kv * 100,  # vLLM reports a fraction, 1 = full
        "requests_running": scrape.values.get(RUNNING),
        "requests_waiting": scrape.values.get(WAITING),
    }


def went_backwards(previous: Scrape, current: Scrape) -> bool:
    counters = [(previous.values.get(n), current.values.get(n)) for n in COUNTERS]
    counters += [(count, current.ttft_buckets.get(le)) for le, count in previous.ttft_buckets.items()]
    return any(before is not None and (now is None or now < before) for before, now in counters)


def window(previous: Scrape | None, current: Scrape) -> Window:
    """The rates and percentiles between two scrapes; all None for the first scrape or after a restart."""
    if previous is None:
        return Window()
    if went_backwards(previous, current):
        return Window(restarted=True)
    elapsed = current.at - previous.at
    if elapsed <= 0:
        return Window()
    deltas = {le: count - previous.ttft_buckets.get(le, 0.0) for le, count in current.ttft_buckets.items()}
    return Window(
        ttft_p50=quantile(0.5, deltas),
        ttft_p95=quantile(0.95, deltas),
        generation_tokens_per_s=_delta(previous, current, GENERATION_TOKENS, lambda d: d / elapsed),
        prefix_cache_hit_rate=_hit_rate(previous, current),
    )


def _delta(previous: Scrape, current: Scrape, name: str, then):
    if name not in current.values:
        return None
    return then(current.values[name] - previous.values.get(name, 0.0))


def _hit_rate(previous: Scrape, current: Scrape) -> float | None:
    queries = _delta(previous, current, PREFIX_QUERIES, lambda d: d)
    hits = _delta(previous, current, PREFIX_HITS, lambda d: d)
    if not queries or hits is None:  # no prefix lookups in the window: the rate is unknown, not 0
        return None
    return 100.0 * hits / queries


def quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative bucket counts: linear inside the bucket.

    None when the histogram saw nothing; a rank in the +Inf bucket answers the highest finite bound.
    """
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for le in bounds:
        count = cumulative[le]
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def _le_text(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le)
