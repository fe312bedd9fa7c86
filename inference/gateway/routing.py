"""Which engine gets a request: the routing table in Redis, published by whoever changes an engine.

The supervisor publishes the table after every state change (and Engine saves do), so a
draining engine is out of the table before its drain is checked. Choosing an engine
and counting the request as in flight on it is one Redis script: a request is either
counted before the drain began, and the drain waits for it, or it sees the engine draining.

Publishers can overlap (the supervisor, a save in the admin, a web process rebuilding a
lost table). Each takes a ticket from Redis before it reads the database, and an
engine's entry is only replaced by a snapshot with a newer ticket: a snapshot read
later cannot be older, so an old snapshot written last changes nothing.
"""

import json
import random
import time

from django.conf import settings

from glmadmin.lib import redis as rd

from . import redis_state
from .errors import GatewayError

READY = "ready"
LOADING = {"starting", "stopped", "backoff", "draining", "soft_restart"}  # back soon: the chat says "loading"
GROUP = "gateway-routes"  # channel-layer group told when a model's state changes (the chat pages)

# Lua functions shared by PICK and the admit-and-route script (admit_and_route.py). scan(): the ready,
# enabled engines of a model with the fewest requests in flight, and the states of the model's enabled
# engines; nil when the table was never written. claim(): count the request in flight on one of them.
PICK_FUNCTIONS = """
local function scan(routes_key, model, exclude, inflight_prefix, now, synced_field)
  local routes = redis.call('HGETALL', routes_key)
  local synced, states, best, best_n = false, {}, {}, nil
  for i = 1, #routes, 2 do
    local name = routes[i]
    if name == synced_field then
      synced = true
    else
      local e = cjson.decode(routes[i + 1])
      if e.model == model and e.enabled == true then
        states[#states + 1] = e.state
        if e.state == 'ready' and name ~= exclude then
          local k = inflight_prefix .. name
          redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
          local n = redis.call('ZCARD', k)
          if best_n == nil or n < best_n then
            best, best_n = {{name, e.url}}, n
          elseif n == best_n then
            best[#best + 1] = {name, e.url}
          end
        end
      end
    end
  end
  if not synced then return nil end
  return best, states
end

local function claim(best, pick_random, inflight_prefix, request_id, lease_end, lease)
  local pick = best[(tonumber(pick_random) % #best) + 1]
  local k = inflight_prefix .. pick[1]
  redis.call('ZADD', k, lease_end, request_id)
  redis.call('EXPIRE', k, lease)
  return pick
end
"""

PICK = PICK_FUNCTIONS + """
local best, states = scan(KEYS[1], ARGV[1], ARGV[2], ARGV[6], ARGV[3], ARGV[7])
if best == nil then return {'unsynced'} end
if #best > 0 then
  local pick = claim(best, ARGV[8], ARGV[6], ARGV[4], ARGV[5], ARGV[9])
  return {'ok', pick[1], pick[2]}
end
if #states > 0 then return {'loading', table.concat(states, ',')} end
return {'unknown'}
"""

# KEYS[1]: the table. ARGV[1]: the snapshot's ticket, ARGV[2]: the synced field, then name, entry pairs.
# An engine missing from a newer snapshot leaves a tombstone ({"v": ticket, "deleted": true}), so an
# older snapshot that still has it cannot bring it back. Returns how many engines' routing changed.
WRITE = """
local ticket, changed, given = tonumber(ARGV[1]), 0, {}
local function differs(a, b)
  return a.deleted ~= b.deleted or a.state ~= b.state or a.model ~= b.model or a.url ~= b.url
    or a.enabled ~= b.enabled
end
local function older(raw)
  return not raw or (tonumber(cjson.decode(raw).v) or 0) < ticket
end
for i = 3, #ARGV, 2 do
  local name = ARGV[i]
  given[name] = true
  local raw = redis.call('HGET', KEYS[1], name)
  if older(raw) then
    redis.call('HSET', KEYS[1], name, ARGV[i + 1])
    if not raw or differs(cjson.decode(raw), cjson.decode(ARGV[i + 1])) then changed = changed + 1 end
  end
end
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  if name ~= ARGV[2] and not given[name] then
    local raw = redis.call('HGET', KEYS[1], name)
    if older(raw) and not cjson.decode(raw).deleted then
      redis.call('HSET', KEYS[1], name, cjson.encode({v = ticket, deleted = true}))
      changed = changed + 1
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[2], '1')
return changed
"""


# --- the table (sync: the supervisor, signals, tests) ------------------------------

def table() -> dict[str, dict]:
    from inference.models import Engine

    return {e.name: {"model": e.running("served_model_name"), "state": e.state, "url": e.base_url, "enabled": e.enabled,
                     "media": media_domains(e)}
            for e in Engine.objects.all()}


def media_domains(engine) -> list[str] | None:
    """What the engine may fetch media from as it runs (media.py): None for a text-only engine, else its
    allowed media domains (empty: data: URLs only). As started: the engine's own flag is what binds it."""
    if engine.pid and "multimodal" not in engine.running_config:
        return None  # started before media existed: without --allowed-media-domains, text only until a restart
    return list(engine.running("allowed_media_domains")) if engine.running("multimodal") else None


def snapshot() -> tuple[int, dict[str, dict]]:
    """(ticket, table): the ticket is taken before the database is read."""
    ticket = rd.client().incr(rd.key("gw", "routes", "ticket"))
    return ticket, table()


def write(ticket: int, rows: dict[str, dict]) -> int:
    """Write a snapshot; each engine's entry only if this snapshot is newer than the one written for it.
    Returns how many engines' routing changed."""
    pairs = []
    for name, entry in rows.items():
        pairs += [name, json.dumps({**entry, "v": ticket})]
    return rd.client().eval(WRITE, 1, redis_state.routes_key(), ticket, redis_state.SYNCED, *pairs)


def publish() -> None:
    """Write the routing table to Redis (after every engine state change); tell the chat pages when a
    model's state changed."""
    ticket, rows = snapshot()
    if write(ticket, rows):
        _announce(rows)


def _announce(rows: dict[str, dict]) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is not None:
        # Small on purpose: every open chat page gets it. The states come from the snapshot just written.
        async_to_sync(layer.group_send)(GROUP, {"type": "routes.changed", "states": states_of(rows)})


def on_change(**kwargs) -> None:
    redis_state.after_commit(publish)


def model_states() -> dict[str, str]:
    """Served model name -> "ready" | "loading" | "down", over enabled engines (sync, uses the ORM)."""
    return states_of(table())


def states_of(rows: dict[str, dict]) -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in rows.values():
        if not entry["enabled"]:
            continue
        model, current = entry["model"], found.get(entry["model"], "down")
        if entry["state"] == READY or current == READY:
            found[model] = READY
        elif entry["state"] in LOADING or current == "loading":
            found[model] = "loading"
        else:
            found[model] = "down"
    return found


# --- per request (async) -----------------------------------------------------------

async def pick(model: str, request_id: str, now: float, exclude: str = "") -> tuple[str, str]:
    """(engine name, base URL) of the ready engine with the fewest requests in flight, counted in flight.

    Raises GatewayError 503 (the model's engines are not ready) or 404 (no engine serves it).
    """
    args = [model, exclude, now, request_id, now + settings.GATEWAY_REQUEST_LEASE, redis_state.inflight_prefix(),
            redis_state.SYNCED, random.randrange(1 << 30), settings.GATEWAY_REQUEST_LEASE]
    result = await redis_state.script(PICK)(keys=[redis_state.routes_key()], args=args)
    if result[0] == "unsynced":  # Redis lost the table (restart, flush): rebuild it from the database
        await rebuild()
        result = await redis_state.script(PICK)(keys=[redis_state.routes_key()], args=args)
    if result[0] == "ok":
        return result[1], result[2]
    raise await refusal(result, model, exclude)


async def rebuild() -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(publish)()


async def refusal(result: list, model: str, exclude: str = "") -> GatewayError:
    """The GatewayError of a pick that found no engine: result is ['loading', states] or ['unknown']."""
    if exclude:
        return GatewayError(503, f"The engine serving model '{model}' could not be reached and no other engine "
                                 "serving it is ready. Try again shortly.", type="server_error",
                            code="upstream_unavailable", retry_after=settings.GATEWAY_LOADING_RETRY_AFTER)
    if result[0] == "loading":
        states = set(result[1].split(","))
        if states & LOADING:
            message = f"Model '{model}' is loading: no engine serving it is ready yet. Try again shortly."
        else:
            message = f"Model '{model}' is unavailable: its engine is {'/'.join(sorted(states))}."
        return GatewayError(503, message, type="server_error", code="model_loading", param="model",
                            retry_after=settings.GATEWAY_LOADING_RETRY_AFTER)
    available = await ready_models()
    listed = ", ".join(available) if available else "none is ready"
    return GatewayError(404, f"The model '{model}' does not exist. Available models: {listed}.",
                        code="model_not_found", param="model")


async def ready_models() -> list[str]:
    """Served model names of ready, enabled engines, for /v1/models."""
    client = redis_state.client()
    routes = await client.hgetall(redis_state.routes_key())
    if redis_state.SYNCED not in routes:
        await rebuild()
        routes = await client.hgetall(redis_state.routes_key())
    models = set()
    for name, raw in routes.items():
        if name != redis_state.SYNCED:
            entry = json.loads(raw)
            if entry.get("state") == READY and entry.get("enabled"):  # not a deleted engine's tombstone
                models.add(entry["model"])
    return sorted(models)


def in_flight(engine_name: str) -> int:
    """The gateway's requests in flight on an engine, from every gateway process (sync: the supervisor)."""
    return rd.client().zcount(redis_state.inflight_key(engine_name), time.time(), "+inf")
