"""Websockets that end with the session they were opened in.

Channels authenticates a websocket once, when it opens (AuthMiddlewareStack reads the session cookie);
without more, a socket outlives a logout, the session's expiry, a password change or the user's
deactivation, and goes on acting for them. A consumer built on SessionBound
- joins a group for its session and one for its user: logging out (user_logged_out) and deactivating
  the user (saved with is_active false) close it at once, in whichever web process it is;
- re-checks its session in the session store every `session_recheck_s` seconds, for what nothing
  announces (expiry, a password change, a deactivation by a bulk update), and whenever its caller
  asks (before acting on a message);
- closes with SIGNED_OUT, the websocket spelling of HTTP 401, which the pages read as "sign in again".
"""

import asyncio
import hashlib
import logging
from importlib import import_module

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save
from django.utils.crypto import constant_time_compare

SIGNED_OUT = 4401
ENDED = {"type": "session.ended"}
log = logging.getLogger(__name__)


def session_group(session_key: str) -> str:
    # Hashed: the group's name is a Redis key, and a session key is a credential.
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def user_group(pk) -> str:
    return f"user.{pk}"


def still_signed_in(scope) -> bool:
    """Whether the scope's session still signs in the scope's user, read afresh from the session store by
    Django's rules: the session exists and has not expired, the user is active, and the password (the
    session's auth hash) is unchanged. Unlike auth.get_user() it changes nothing (that may cycle the key).
    Sync: run it in a thread."""
    user, key = scope.get("user"), getattr(scope.get("session"), "session_key", None)
    if not key or user is None or not user.is_authenticated:
        return False
    data = import_module(settings.SESSION_ENGINE).SessionStore(key).load()  # {} once gone or expired
    backend = data.get(auth.BACKEND_SESSION_KEY)
    if str(data.get(auth.SESSION_KEY)) != str(user.pk) or backend not in settings.AUTHENTICATION_BACKENDS:
        return False
    current = auth.load_backend(backend).get_user(user.pk)  # None once deactivated
    if current is None:
        return False
    stored = data.get(auth.HASH_SESSION_KEY) or ""
    # The hash under the current secret, then under each fallback secret (as auth.get_user() tries them).
    hashes = [current.get_session_auth_hash()] + [
        current._get_session_auth_hash(secret=secret) for secret in settings.SECRET_KEY_FALLBACKS]
    return any(constant_time_compare(stored, expected) for expected in hashes)


class SessionBound:
    """A mixin for channels' async websocket consumers: bind_session() once the user is known to be signed
    in (in connect), unbind_session() in disconnect."""

    session_recheck_s = 60.0

    async def bind_session(self) -> None:
        self._session_groups = [session_group(self.scope["session"].session_key), user_group(self.scope["user"].pk)]
        for group in self._session_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self._session_watch = asyncio.create_task(self._watch_session())

    async def unbind_session(self) -> None:
        watch = getattr(self, "_session_watch", None)
        if watch is None:
            return  # never bound: refused in connect
        watch.cancel()
        for group in self._session_groups:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def session_valid(self) -> bool:
        return await database_sync_to_async(still_signed_in)(self.scope)

    async def end_session(self) -> None:
        """Close the socket: the session ended. A consumer with work in flight stops it first."""
        await self.close(code=SIGNED_OUT)

    async def session_ended(self, event) -> None:
        """The group message sent on logout and deactivation."""
        await self.end_session()

    async def _watch_session(self) -> None:
        # A timer, not a wait for an event: expiry and a password change announce themselves nowhere.
        while await self._sleep_then_check():
            pass
        await self.end_session()

    async def _sleep_then_check(self) -> bool:
        await asyncio.sleep(self.session_recheck_s)
        return await self.session_valid()


def _announce(group: str) -> None:
    """Tell the sockets in group that their session ended. Logging out must work with Redis down: the
    sockets then end at their next re-check."""
    try:
        async_to_sync(get_channel_layer().group_send)(group, ENDED)
    except Exception:  # noqa: BLE001 - logged; the timer is the fallback
        log.warning("could not tell the websockets of %s that their session ended", group, exc_info=True)


def _on_logout(sender, request, user, **kwargs) -> None:
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        _announce(session_group(key))


def _on_user_saved(sender, instance, **kwargs) -> None:
    if not instance.is_active:
        pk = instance.pk
        transaction.on_commit(lambda: _announce(user_group(pk)), robust=True)


user_logged_out.connect(_on_logout, dispatch_uid="glmadmin.websession.logout")
post_save.connect(_on_user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="glmadmin.websession.user")
