"""Admission of a request: the red-alert pause, then the caller's limits, in one Redis script.

Requests per minute is a sliding window (a sorted set of request times), so a
limit never lets twice the rate through at a window edge; concurrent requests
are a sorted set of the caller's requests in flight, scored by lease end, so a
crashed gateway process's requests stop counting after the lease (short, and
renewed while a request runs: see leases.py).
"""

import math

from django.conf import settings

from glmadmin.lib import redis as rd

from . import redis_state
from .errors import GatewayError

WINDOW = 60  # seconds: the "minute" of requests per minute

# A Lua function, shared by this module's script and the gateway's admit-and-route script (admit_and_route.py).
ADMIT_FUNCTION = """
local function admit(admission_key, rate_key, busy_key, now, rpm, concurrency, request_id, lease_end, window, lease)
  local admission = redis.call('GET', admission_key)
  if not admission then return {'unknown'} end
  local a = cjson.decode(admission)
  if a.paused then return {'paused', a.reason} end
  redis.call('ZREMRANGEBYSCORE', rate_key, '-inf', now - window)
  if redis.call('ZCARD', rate_key) >= rpm then
    local oldest = redis.call('ZRANGE', rate_key, 0, 0, 'WITHSCORES')
    return {'rpm', tostring(tonumber(oldest[2]) + window - now)}
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

ADMIT = ADMIT_FUNCTION + """
return admit(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4],
             ARGV[5], tonumber(ARGV[6]), ARGV[7])
"""


def caller_limits(caller) -> tuple[int, int]:
    """(requests per minute, concurrent requests) of a caller."""
    if caller.kind == "user":
        return settings.GATEWAY_USER_RPM, settings.GATEWAY_USER_CONCURRENCY
    return (caller.rpm or settings.GATEWAY_KEY_RPM, caller.concurrency or settings.GATEWAY_KEY_CONCURRENCY)


def rate_prefix() -> str:
    return rd.key("gw", "rate", "")


def busy_prefix() -> str:
    return rd.key("gw", "busy", "")


def rate_key(caller) -> str:
    return f"{rate_prefix()}{caller.kind}:{caller.slot}"


def busy_key(caller) -> str:
    return f"{busy_prefix()}{caller.kind}:{caller.slot}"


async def admit(caller, request_id: str, now: float) -> None:
    """Count the request against the caller's limits, or raise GatewayError (paused 503, limited 429)."""
    rpm, concurrency = caller_limits(caller)
    keys = [rd.key(redis_state.ADMISSION), rate_key(caller), busy_key(caller)]
    args = [now, rpm, concurrency, request_id, now + settings.GATEWAY_REQUEST_LEASE, WINDOW,
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
    rpm, concurrency = caller_limits(caller)
    if result[0] == "paused":
        reason = (result[1] if len(result) > 1 else None) or "a red alert is open"
        # The disk check's reason already says so ("new requests are paused: disk at 97.4 % on /data").
        message = reason if reason.startswith("new requests are paused") else f"new requests are paused: {reason}"
        return GatewayError(503, message, type="server_error",
                            code="requests_paused", retry_after=settings.GATEWAY_PAUSED_RETRY_AFTER)
    if result[0] == "rpm":
        wait = max(1, math.ceil(float(result[1])))
        return GatewayError(429, f"Rate limit reached: {rpm} requests per minute for {caller.label}. "
                                 f"Try again in {wait} s.", type="rate_limit_error", code="rate_limit_exceeded",
                            retry_after=wait)
    return GatewayError(429, f"Too many requests at once: {concurrency} concurrent requests allowed for "
                             f"{caller.label}. Wait for one to finish.", type="rate_limit_error",
                        code="concurrency_limit_exceeded", retry_after=1)


def release(pipe, caller, request_id: str) -> None:
    """Add to pipe: the request no longer counts against the caller's concurrency."""
    pipe.zrem(busy_key(caller), request_id)
