"""API keys as the gateway reads them: a Redis hash from key hash to the key's limits.

Rewritten from the database whenever a key changes (saved, revoked, deleted), so
checking a key is one Redis call (part of the admit-and-route script, admit_and_route.py) and a revoked
key stops working at once.
"""

import json
from dataclasses import dataclass
from functools import cached_property

from glmadmin.lib import redis as rd

from . import redis_state
from .errors import GatewayError


def _entry(key) -> str:
    return json.dumps({"id": key.pk, "label": str(key), "rpm": key.requests_per_minute,
                       "concurrency": key.max_concurrent, "tpm": key.tokens_per_minute})


def publish() -> None:
    """Write every active key to Redis (replacing what was there)."""
    from inference.models import ApiKey

    rows = {key.key_hash: _entry(key) for key in ApiKey.objects.filter(revoked_at__isnull=True)}
    pipe = rd.client().pipeline(transaction=True)
    pipe.delete(redis_state.keys_key())
    pipe.hset(redis_state.keys_key(), mapping={redis_state.SYNCED: "1", **rows})
    pipe.execute()


def on_change(**kwargs) -> None:
    redis_state.after_commit(publish)


async def rebuild() -> None:
    """Redis lost the keys (restart, flush): write them again from the database."""
    from asgiref.sync import sync_to_async

    await sync_to_async(publish)()


@dataclass(frozen=True)
class Presented:
    """The plain API key a client sent, not checked yet."""

    plain: str

    @cached_property
    def hash(self) -> str:
        from inference.models import ApiKey

        return ApiKey.hash(self.plain)


@dataclass(frozen=True)
class Caller:
    kind: str  # "key" (an API key) or "user" (a logged-in user of the chat page)
    id: int  # ApiKey.pk or User.pk
    label: str  # key name/prefix or username, for counting and logs
    # For "key": the ApiKey row's limits (settings' defaults when None); "user" uses
    # settings.GATEWAY_USER_RPM and GATEWAY_USER_CONCURRENCY.
    rpm: int | None = None
    concurrency: int | None = None
    tpm: int | None = None  # tokens per minute; None: no token limit
    ident: str = ""  # what its limits are kept under in Redis: a key's hash (known before the key is checked)

    @property
    def stats_label(self) -> str:
        return f"{self.kind}:{self.label}"

    @property
    def slot(self) -> str:
        return self.ident or str(self.id)


def caller_of(entry: str, key_hash: str):
    """The Caller of a key's Redis entry."""
    found = json.loads(entry)
    return Caller("key", found["id"], found["label"], rpm=found["rpm"], concurrency=found["concurrency"],
                  tpm=found.get("tpm"), ident=key_hash)


async def caller_for(plain: str):
    """The Caller of a plain API key, or None if it is unknown or revoked."""
    key_hash = Presented(plain).hash
    client = redis_state.client()
    found, synced = await client.hmget(redis_state.keys_key(), [key_hash, redis_state.SYNCED])
    if synced is None:
        await rebuild()
        found = await client.hget(redis_state.keys_key(), key_hash)
    return None if found is None else caller_of(found, key_hash)


def missing_key() -> GatewayError:
    return GatewayError(401, "Missing API key: send it as the header 'Authorization: Bearer <key>'. "
                             "Keys are created by an administrator in the admin under API keys.",
                        type="authentication_error", code="invalid_api_key")


def invalid_key() -> GatewayError:
    return GatewayError(401, "Invalid API key: it is unknown or was revoked.", type="authentication_error",
                        code="invalid_api_key")
