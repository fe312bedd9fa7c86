"""Limits on what a chat page may send over its websocket: the socket is an edge like the HTTP API.

Every message costs the web process a JSON parse and a read of the session store, and a "send" a
check of the whole conversation, before the gateway's own limits (requests per minute, concurrency)
are asked. So a message over a size cap is refused unread, and messages are counted in two sliding
windows of a minute: one per socket (in the consumer's memory) and one per user across all their
sockets and web processes (a sorted set in Redis). A refused message is answered with an error saying
how long to wait, and is not counted.

Both windows run on the wall clock (time.time()), the per-user one because it is shared between
processes, the per-socket one so that the two agree.
"""

import math
import time
import uuid
from collections import deque

from django.conf import settings

from glmadmin.lib import redis as rd
from inference.gateway import redis_state

WINDOW = 60.0  # seconds

# KEYS[1]: the user's sorted set of message times. ARGV: now, limit, window, a unique member.
# Returns '' when the message is counted, else the seconds until the oldest counted message leaves the window.
TAKE = """
local now, limit, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(2 * window))  -- idle users' sets go; a margin for clocks
return ''
"""


class Refused(Exception):
    """code, message and retry_after (seconds, or None) for the page's error message."""

    def __init__(self, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.code, self.message, self.retry_after = code, message, retry_after


def check_size(text_data: str | None) -> None:
    """Raises Refused for a binary message or a text message over the cap, before it is parsed."""
    if not text_data:  # channels' JSON consumer would fail on it and drop the socket
        raise Refused("invalid_message", "Only non-empty text (JSON) messages are accepted on the chat socket.")
    cap = settings.CHAT_SOCKET_MAX_MESSAGE_CHARS
    if len(text_data) > cap:
        raise Refused("message_too_large", f"The message is {len(text_data):,} characters; the chat accepts at most "
                                           f"{cap:,} in one message. Clear the conversation (it is sent whole "
                                           "with each question) or send a shorter text.")


class SocketWindow:
    """The per-socket sliding window: the times of the messages counted in the last minute."""

    def __init__(self):
        self.times: deque[float] = deque()

    def take(self, now: float) -> None:
        limit = settings.CHAT_SOCKET_MESSAGES_PER_MINUTE
        while self.times and self.times[0] <= now - WINDOW:
            self.times.popleft()
        if len(self.times) >= limit:
            raise _too_many(f"at most {limit} messages a minute on one chat page", self.times[0] + WINDOW - now)
        self.times.append(now)


def user_key(user_pk) -> str:
    return rd.key("chat", "rate", str(user_pk))


async def take_for_user(user_pk, now: float) -> None:
    """Count a message in the user's window (all their sockets), or raise Refused."""
    limit = settings.CHAT_USER_MESSAGES_PER_MINUTE
    wait = await redis_state.script(TAKE)(keys=[user_key(user_pk)], args=[now, limit, WINDOW, uuid.uuid4().hex])
    if wait:
        raise _too_many(f"at most {limit} messages a minute for one user, over all their chat pages", float(wait))


def _too_many(rule: str, wait: float) -> Refused:
    seconds = max(1, math.ceil(wait))
    return Refused("rate_limited", f"Too many messages: {rule}. Try again in {seconds} s.", retry_after=seconds)


async def check(window: SocketWindow, user_pk, text_data: str | None) -> None:
    """All of a message's checks, cheapest first; raises Refused."""
    check_size(text_data)
    now = time.time()
    window.take(now)
    try:
        await take_for_user(user_pk, now)
    except Refused:
        window.times.pop()  # refused: not counted on the socket either
        raise
