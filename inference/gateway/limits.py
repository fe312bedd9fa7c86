"""Admission of a request: the red-alert pause, then the caller's limits, in one Redis script.

Requests per minute is a sliding window (a sorted set of request times), so a
limit never lets twice the rate through at a window edge; concurrent requests
are a sorted set of the caller's requests in flight, scored by lease end, so a
crashed gateway process's requests stop counting after the lease (short, and
renewed while a request runs: see leases.py).

Tokens per minute (API keys only) count what the engine says a finished request used (its usage
numbers: prompt + completion tokens), in a hash of one-second buckets over the last minute, written
when the request ends (stats.finish runs COUNT_USAGE in the same round trip as its counters). A key at
or over its limit is refused until enough buckets leave the window to bring it under; Retry-After
says when that is. Requests already running may still add to the window when they end: the limit
holds to within what one key has in flight, as OpenAI's own per-minute token limits do.
"""

import math

from django.conf import settings

from glmadmin.lib import redis as rd

from . import redis_state
from .errors import GatewayError

WINDOW = 60  # seconds: the "minute" of requests per minute

# Lua functions, shared by this module's script and the gateway's admit-and-route script (admit_and_route.py).
# tokens_wait: nil when the window (second -> tokens) holds fewer than tpm tokens, else the seconds until
# enough of it has left the window to bring it under tpm; buckets that have left are deleted on the way.
ADMIT_FUNCTION = """
local function tokens_wait(tokens_key, now, window, tpm)
  local fields = redis.call('HGETALL', tokens_key)
  local buckets, used = {}, 0
  for i = 1, #fields, 2 do
    local second, tokens = tonumber(fields[i]), tonumber(fields[i + 1])
    if second + window <= now then
      redis.call('HDEL', tokens_key, fields[i])
    else
      used = used + tokens
      buckets[#buckets + 1] = {second, tokens}
    end
  end
  if used < tpm then return nil end
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  for _, bucket in ipairs(buckets) do
    used = used - bucket[2]
    if used < tpm then return bucket[1] + window - now end
  end
  return window
end
local function admit(admission_key, rate_key, busy_key, tokens_key, now, rpm, concurrency, tpm, request_id,
                     lease_end, window, lease)
  local admission = redis.call('GET', admission_key)
  if not admission then return {'unknown'} end
  local a = cjson.decode(admission)
  if a.paused then return {'paused'} end  -- its reason names host paths: not for API clients
  redis.call('ZREMRANGEBYSCORE', rate_key, '-inf', now - window)
  if redis.call('ZCARD', rate_key) >= rpm then
    local oldest = redis.call('ZRANGE', rate_key, 0, 0, 'WITHSCORES')
    return {'rpm', tostring(tonumber(oldest[2]) + window - now)}
  end
  if tpm > 0 then
    local wait = tokens_wait(tokens_key, now, window, tpm)
    if wait then return {'tpm', tostring(wait)} end
  end
  redis.call('ZREMRANGEBYSCORE', busy_key, '-inf', now)
  if redis.call('ZCARD', busy_key) >= concurrency then return {'busy'} end
  redis.call('ZADD', rate_key, now, request_id)
  redis.call('EXPIRE', rate_key, window + 1)
  redis.call('ZADD', busy_key, lease_end, request_id)
  redis.call('EXPIRE', busy_key, lease)
  return {'ok'}
end
"""

# Run by stats.finish when a key's request ends: its tokens into the key's window (bucket: the second it
# ended), and the key's usage totals for the admin (requests, tokens, last used).
COUNT_USAGE_FUNCTION = """
local function count_usage(tokens_key, usage_key, now, window, prompt, completion)
  local tokens = prompt + completion
  if tokens > 0 then
    redis.call('HINCRBY', tokens_key, tostring(math.floor(now)), tokens)
    redis.call('EXPIRE', tokens_key, window + 1)
  end
  redis.call('HINCRBY', usage_key, 'requests', 1)
  redis.call('HINCRBY', usage_key, 'prompt_tokens', prompt)
  redis.call('HINCRBY', usage_key, 'completion_tokens', completion)
  redis.call('HSET', usage_key, 'last_used', tostring(now))
end
"""

ADMIT = ADMIT_FUNCTION + """
return admit(KEYS[1], KEYS[2], KEYS[3], KEYS[4], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
             tonumber(ARGV[4]), ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8])
"""


def caller_limits(caller) -> tuple[int, int, int]:
    """(requests per minute, concurrent requests, tokens per minute: 0 for none) of a caller."""
    if caller.kind == "user":
        return settings.GATEWAY_USER_RPM, settings.GATEWAY_USER_CONCURRENCY, 0
    return (caller.rpm or settings.GATEWAY_KEY_RPM, caller.concurrency or settings.GATEWAY_KEY_CONCURRENCY,
            caller.tpm or 0)


def rate_prefix() -> str:
    return rd.key("gw", "rate", "")


def busy_prefix() -> str:
    return rd.key("gw", "busy", "")


def rate_key(caller) -> str:
    return f"{rate_prefix()}{caller.kind}:{caller.slot}"


def tokens_prefix() -> str:
    return rd.key("gw", "tokens", "")


def usage_prefix() -> str:
    return rd.key("gw", "usage", "")


def busy_key(caller) -> str:
    return f"{busy_prefix()}{caller.kind}:{caller.slot}"


def tokens_key(caller) -> str:
    return f"{tokens_prefix()}{caller.kind}:{caller.slot}"


def usage_key(key_hash: str) -> str:
    """An API key's usage totals (a hash: requests, prompt_tokens, completion_tokens, last_used)."""
    return f"{usage_prefix()}key:{key_hash}"


def usage_keys(caller) -> tuple[str, str] | None:
    """(token window, usage hash) a finished request of an API key counts into; None for a chat page's user."""
    return (tokens_key(caller), usage_key(caller.slot)) if caller.kind == "key" else None


def usage(key_hash: str) -> dict:
    """An API key's usage totals, read for the admin: requests, prompt/completion tokens, last used (epoch s)."""
    found = rd.client().hgetall(usage_key(key_hash))
    return {"requests": int(found.get("requests", 0)), "prompt_tokens": int(found.get("prompt_tokens", 0)),
            "completion_tokens": int(found.get("completion_tokens", 0)),
            "last_used": float(found["last_used"]) if "last_used" in found else None}


async def admit(caller, request_id: str, now: float) -> None:
    """Count the request against the caller's limits, or raise GatewayError (paused 503, limited 429)."""
    rpm, concurrency, tpm = caller_limits(caller)
    keys = [rd.key(redis_state.ADMISSION), rate_key(caller), busy_key(caller), tokens_key(caller)]
    args = [now, rpm, concurrency, tpm, request_id, now + settings.GATEWAY_REQUEST_LEASE, WINDOW,
            settings.GATEWAY_REQUEST_LEASE]
    result = await redis_state.script(ADMIT)(keys=keys, args=args)
    if result[0] == "unknown":  # the flag is gone (Redis restarted): recompute it from the open incidents
        await sync_admission()
        result = await redis_state.script(ADMIT)(keys=keys, args=args)
    if result[0] != "ok":
        raise refusal(result, caller)


async def sync_admission() -> None:
    from asgiref.sync import sync_to_async

    from alerts import admission

    await sync_to_async(admission.sync)()


def refusal(result: list, caller) -> GatewayError:
    """The GatewayError of an admission script's answer other than 'ok'."""
    rpm, concurrency, tpm = caller_limits(caller)
    if result[0] == "paused":
        # What to do, not why in detail: the alert's own text names host paths and devices ("disk at 97.4 %
        # on /data"), which are the operators' business (the dashboard and the notifications say it to them).
        wait = settings.GATEWAY_PAUSED_RETRY_AFTER
        return GatewayError(503, "New requests are paused while a critical alert is open on the server (such as a "
                                 "nearly full disk); requests already running finish, and the operators have been "
                                 f"notified. Try again in {wait} s.", type="server_error", code="requests_paused",
                            retry_after=wait)
    if result[0] == "rpm":
        wait = max(1, math.ceil(float(result[1])))
        return GatewayError(429, f"Rate limit reached: {rpm} requests per minute for {caller.label}. "
                                 f"Try again in {wait} s.", type="rate_limit_error", code="rate_limit_exceeded",
                            retry_after=wait)
    if result[0] == "tpm":
        wait = max(1, math.ceil(float(result[1])))
        return GatewayError(429, f"Rate limit reached: {tpm} tokens per minute (prompt and completion, as the "
                                 f"engine counts them) for {caller.label}. Try again in {wait} s.",
                            type="rate_limit_error", code="rate_limit_exceeded", retry_after=wait)
    return GatewayError(429, f"Too many requests at once: {concurrency} concurrent requests allowed for "
                             f"{caller.label}. Wait for one to finish.", type="rate_limit_error",
                        code="concurrency_limit_exceeded", retry_after=1)


def release(pipe, caller, request_id: str) -> None:
    """Add to pipe: the request no longer counts against the caller's concurrency."""
    pipe.zrem(busy_key(caller), request_id)
