"""Counting every request: Redis hashes of counters, one pipeline per finished request.

Two sets of the same counters: totals since the start (for Prometheus, which
computes rates itself) and one hash per minute kept two hours (for the
dashboard's last hour). Latencies go into fixed histogram buckets, so a p50 is
a sum of counters, not a list of samples.
"""

import time
from dataclasses import dataclass

from glmadmin.lib import redis as rd

from . import limits
from .limits import COUNT_USAGE_FUNCTION

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, float("inf"))
MINUTE_TTL = 2 * 3600
SEP = "|"


@dataclass
class Outcome:
    caller: str  # "key:<label>", "user:<name>" or "anonymous"
    model: str
    engine: str  # "-" when refused before routing
    status: int
    first_byte_s: float | None = None
    duration_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _clean(label: str) -> str:
    return (label or "-").replace(SEP, "/")[:100]


def _bucket(seconds: float) -> str:
    return next(f"{le:g}" for le in BUCKETS if seconds <= le)


def fields(outcome: Outcome) -> dict[str, float]:
    caller, model = _clean(outcome.caller), _clean(outcome.model)
    counts = {SEP.join(("req", caller, model, _clean(outcome.engine), str(outcome.status))): 1}
    if outcome.prompt_tokens:
        counts[SEP.join(("tok", caller, model, "prompt"))] = outcome.prompt_tokens
    if outcome.completion_tokens:
        counts[SEP.join(("tok", caller, model, "completion"))] = outcome.completion_tokens
    if outcome.status < 400:
        if outcome.first_byte_s is not None:
            counts[SEP.join(("ttfb", model, _bucket(outcome.first_byte_s)))] = 1
        counts[SEP.join(("dur", model, _bucket(outcome.duration_s)))] = 1
    return counts


def minute_key(minute: int) -> str:
    return rd.key("gw", "stats", str(minute))


def total_key() -> str:
    return rd.key("gw", "stats", "total")


def sums(outcome: Outcome) -> dict[str, float]:
    """The latency sums (for Prometheus' histogram _sum), totals only."""
    if outcome.status >= 400:
        return {}
    model = _clean(outcome.model)
    found = {SEP.join(("dur_sum", model)): outcome.duration_s}
    if outcome.first_byte_s is not None:
        found[SEP.join(("ttfb_sum", model))] = outcome.first_byte_s
    return found


def add(pipe, outcome: Outcome, now: float | None = None) -> None:
    """Add the outcome's counters to a (sync or async) Redis pipeline."""
    key = minute_key(int((now or time.time()) // 60))
    for field, amount in fields(outcome).items():
        pipe.hincrby(total_key(), field, amount)
        pipe.hincrby(key, field, amount)
    for field, amount in sums(outcome).items():
        pipe.hincrbyfloat(total_key(), field, amount)
    pipe.expire(key, MINUTE_TTL)


# A finished request in one command (its counters, leaving the sorted sets that counted it, and an API
# key's token window and usage totals): a pipeline of a dozen commands cost more CPU than the rest of the request.
# KEYS[1]: totals, KEYS[2]: this minute's counters, KEYS[3...]: sorted sets to remove ARGV[1] from, then (when
# ARGV[4] is not '') the key's token window and usage hash. ARGV[2]: the minute hash's TTL, ARGV[3]: how many
# counter pairs follow (both hashes); ARGV[4..7]: '' or now, the window, prompt and completion tokens;
# then the counter pairs, then float pairs.
FINISH = COUNT_USAGE_FUNCTION + """
local sets = #KEYS
if ARGV[4] ~= '' then
  sets = sets - 2
  count_usage(KEYS[sets + 1], KEYS[sets + 2], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]),
              tonumber(ARGV[7]))
end
for i = 3, sets do redis.call('ZREM', KEYS[i], ARGV[1]) end
local n, i = tonumber(ARGV[3]), 8
for _ = 1, n do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
"""


async def finish(outcome: Outcome, request_id: str, leaving: list[str],
                 usage: tuple[str, str] | None = None) -> None:
    """Count the outcome and remove the request from the sorted sets in `leaving`, in one round trip. With an
    API key's `usage` keys (limits.usage_keys), the request's tokens count against its tokens per minute."""
    from . import redis_state

    counts, floats = fields(outcome), sums(outcome)
    now = time.time()
    args = [request_id, MINUTE_TTL, len(counts)]
    args += ([now, limits.WINDOW, outcome.prompt_tokens, outcome.completion_tokens] if usage else ["", "", "", ""])
    for pairs in (counts, floats):
        for field, amount in pairs.items():
            args += (field, amount)
    keys = [total_key(), minute_key(int(now // 60)), *leaving, *(usage or ())]
    await redis_state.script(FINISH)(keys=keys, args=args)


async def record(outcome: Outcome) -> None:
    await finish(outcome, "", [])


def add_sync(outcome: Outcome) -> None:
    """Count an outcome from synchronous code."""
    pipe = rd.client().pipeline(transaction=False)
    add(pipe, outcome)
    pipe.execute()


# --- reading (sync: dashboard, /metrics) ----------------------------------------------

def last_hour(now: float | None = None) -> dict[str, float]:
    """The per-minute counters of the last 60 minutes, summed."""
    minute = int((now or time.time()) // 60)
    pipe = rd.client().pipeline(transaction=False)
    for m in range(minute - 59, minute + 1):
        pipe.hgetall(minute_key(m))
    summed: dict[str, float] = {}
    for counts in pipe.execute():
        for field, value in counts.items():
            summed[field] = summed.get(field, 0) + float(value)
    return summed


def totals() -> dict[str, float]:
    return {field: float(value) for field, value in rd.client().hgetall(total_key()).items()}


def percentile(histogram: dict[str, float], q: float) -> float | None:
    """The upper bound of the bucket holding the q-quantile, from {le: count}; None without samples."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0.0
    for le in BUCKETS:
        seen += histogram.get(f"{le:g}", 0)
        if seen >= q * total:
            return le
    return BUCKETS[-1]


def summary(counts: dict[str, float]) -> dict:
    """Per model and per caller: requests, errors, tokens; per model: p50 first byte and duration."""
    models: dict[str, dict] = {}
    callers: dict[str, dict] = {}

    def row(table, name):
        return table.setdefault(name, {"name": name, "requests": 0, "errors": 0, "tokens": 0, "ttfb": {}, "dur": {}})

    for field, value in counts.items():
        kind, *parts = field.split(SEP)
        if kind == "req":
            caller, model, _engine, status = parts
            for target in (row(models, model), row(callers, caller)):
                target["requests"] += value
                target["errors"] += value if int(status) >= 400 else 0
        elif kind == "tok":
            caller, model, _which = parts
            row(models, model)["tokens"] += value
            row(callers, caller)["tokens"] += value
        elif kind in ("ttfb", "dur"):
            model, le = parts
            row(models, model)[kind][le] = value
    for entry in models.values():
        entry["p50_ttfb"] = percentile(entry.pop("ttfb"), 0.5)
        entry["p50_duration"] = percentile(entry.pop("dur"), 0.5)
    for entry in callers.values():
        entry.pop("ttfb"), entry.pop("dur")
    by_requests = lambda entry: (-entry["requests"], entry["name"])  # noqa: E731
    return {"models": sorted(models.values(), key=by_requests), "callers": sorted(callers.values(), key=by_requests),
            "requests": sum(e["requests"] for e in models.values()),
            "errors": sum(e["errors"] for e in models.values())}
