"""A request's way in, in one Redis round trip: its API key, the red-alert pause, its caller's
limits and the engine it goes to, all in one script (the same Lua functions limits.py and
routing.py run on their own).

When the script finds a piece of shared state missing (Redis restarted or was flushed), it
changes nothing; the piece is rebuilt from the database and the script runs again.
"""

import random
from dataclasses import dataclass

from django.conf import settings

from glmadmin.lib import redis as rd

from . import keys, limits, redis_state, routing
from .errors import GatewayError

ENTER = limits.ADMIT_FUNCTION + routing.PICK_FUNCTIONS + """
local function limit(value, default)
  local n = tonumber(value)
  if n == nil or n == 0 then return tonumber(default) end
  return n
end
local entry, rpm, concurrency, tpm = '', tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[16])
if ARGV[1] == 'lookup' then  -- an API key as presented: its entry, or refused
  local found = redis.call('HMGET', KEYS[1], ARGV[2], ARGV[15])
  if not found[2] then return {'keys_unsynced'} end
  if not found[1] then return {'invalid_key'} end
  entry = found[1]
  local k = cjson.decode(entry)
  rpm, concurrency = limit(k.rpm, ARGV[5]), limit(k.concurrency, ARGV[6])
  tpm = tonumber(k.tpm) or 0  -- JSON null (no token limit) is not a number
end
local best, states = scan(KEYS[3], ARGV[12], '', ARGV[14], ARGV[7], ARGV[15])
if best == nil then return {'routes_unsynced'} end
local known = ''
if #states > 0 then known = '1' end
local admitted = admit(KEYS[2], KEYS[4], KEYS[5], KEYS[6], tonumber(ARGV[7]), rpm, concurrency, tpm, ARGV[8],
                       ARGV[9], tonumber(ARGV[11]), ARGV[10])
if admitted[1] == 'unknown' then return {'admission_unknown'} end
if admitted[1] ~= 'ok' then
  local detail = admitted[2]
  if type(detail) ~= 'string' then detail = '' end
  return {admitted[1], entry, known, detail}
end
if #best > 0 then
  local pick = claim(best, ARGV[13], ARGV[14], ARGV[8], ARGV[9], ARGV[10])
  return {'ok', entry, known, pick[1], pick[2]}
end
redis.call('ZREM', KEYS[5], ARGV[8])  -- no engine to go to: no concurrency slot held
if #states > 0 then return {'loading', entry, known, table.concat(states, ',')} end
return {'unknown', entry, known}
"""

# After a cancelled entry (the client left while the script ran): the request may hold a concurrency
# slot and an engine's in-flight count, or nothing. KEYS[1]: the table, KEYS[2]: the busy set;
# ARGV[1]: the request id, ARGV[2]: the in-flight prefix, ARGV[3]: the synced field.
RELEASE_ANYWHERE = """
redis.call('ZREM', KEYS[2], ARGV[1])
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if name ~= ARGV[3] then redis.call('ZREM', ARGV[2] .. name, ARGV[1]) end
end
"""

REBUILD = {"keys_unsynced": keys.rebuild, "admission_unknown": limits.sync_admission,
           "routes_unsynced": routing.rebuild}


class Refused(Exception):
    """error: what the client gets; caller: who asked (None for an invalid key); known: the model is
    one routing knows (only those are counted by name)."""

    def __init__(self, error: GatewayError, caller, known: bool):
        super().__init__(error)
        self.error, self.caller, self.known = error, caller, known


@dataclass(frozen=True)
class Admitted:
    caller: object  # keys.Caller
    engine: str
    url: str


def slot_keys(who) -> tuple[str, str]:
    """(rate set, busy set) of a Caller or a presented API key: known before the key is checked."""
    kind, ident = _slot(who)
    return f"{limits.rate_prefix()}{kind}:{ident}", f"{limits.busy_prefix()}{kind}:{ident}"


def tokens_key(who) -> str:
    """The token window of a Caller or a presented API key (limits.py)."""
    kind, ident = _slot(who)
    return f"{limits.tokens_prefix()}{kind}:{ident}"


def _slot(who) -> tuple[str, str]:
    return ("key", who.hash) if isinstance(who, keys.Presented) else (who.kind, who.slot)


async def enter(who, request_id: str, model: str, now: float) -> Admitted:
    """who: a keys.Caller (the chat page's user) or a keys.Presented (an API client). Raises Refused."""
    presented = isinstance(who, keys.Presented)
    if presented:
        mode, ident, rpm, concurrency, tpm = "lookup", who.hash, 0, 0, 0
    else:
        mode, ident, (rpm, concurrency, tpm) = "given", who.slot, limits.caller_limits(who)
    lease = settings.GATEWAY_REQUEST_LEASE
    script = redis_state.script(ENTER)
    script_keys = [redis_state.keys_key(), rd.key(redis_state.ADMISSION), redis_state.routes_key(), *slot_keys(who),
                   tokens_key(who)]
    args = [mode, ident, rpm, concurrency, settings.GATEWAY_KEY_RPM, settings.GATEWAY_KEY_CONCURRENCY, now,
            request_id, now + lease, lease, limits.WINDOW, model, random.randrange(1 << 30),
            redis_state.inflight_prefix(), redis_state.SYNCED, tpm]
    result = await script(keys=script_keys, args=args)
    for _ in range(len(REBUILD)):  # each missing piece is rebuilt at most once
        if result[0] not in REBUILD:
            break
        await REBUILD[result[0]]()
        result = await script(keys=script_keys, args=args)
    status = result[0]
    if status == "invalid_key":
        raise Refused(keys.invalid_key(), None, False)
    if status in REBUILD:  # still missing right after a rebuild: Redis is not keeping what it is given
        raise RuntimeError(f"the gateway's state in Redis could not be rebuilt ({status})")
    caller = keys.caller_of(result[1], ident) if presented else who
    if status == "ok":
        return Admitted(caller, result[3], result[4])
    known = bool(result[2])
    if status in ("loading", "unknown"):
        raise Refused(await routing.refusal([status, *result[3:]], model), caller, known)
    raise Refused(limits.refusal([status, result[3]], caller), caller, known)


async def release_anywhere(who, request_id: str) -> None:
    await redis_state.script(RELEASE_ANYWHERE)(keys=[redis_state.routes_key(), slot_keys(who)[1]],
                                         args=[request_id, redis_state.inflight_prefix(), redis_state.SYNCED])
