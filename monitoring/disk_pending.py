"""Disk levels held back by their "for" duration until a reading has stayed at them that long.

The checks run every few seconds and the database is touched only on
transitions, so what is pending lives in Redis: per filesystem, since when the
readings have been at or above each level above the incident's current one,
and when the last reading was. A reading below a level's threshold drops that
level's clock; so does a gap in the readings longer than MAX_GAP_SECONDS (the
checks stopped: nobody knows what the disk did meanwhile). Lowering a level or
resolving is never held back: the clear margin already stops flapping.
"""

import json
import logging
from dataclasses import dataclass
from datetime import datetime

import redis

from alerts.levels import rank
from glmadmin.lib import redis as rd

from .models import WatchedFilesystem

log = logging.getLogger(__name__)

MAX_GAP_SECONDS = 60


@dataclass(frozen=True)
class Pending:
    """The highest level a filesystem's readings have reached but not held long enough yet."""

    level: str
    since: float  # epoch seconds
    for_seconds: int

    def held(self, now: float) -> float:
        return max(0.0, now - self.since)

    def as_json(self) -> dict:
        return {"level": self.level, "since": self.since, "for": self.for_seconds}


@dataclass(frozen=True)
class Decision:
    level: str | None  # where the incident should be now
    pending: Pending | None
    held_seconds: float = 0.0  # how long the reading held `level` when it was held back first (for the message)


def _key(fs: WatchedFilesystem) -> str:
    return rd.key("disk", "pending", str(fs.pk))


def decide(fs: WatchedFilesystem, percent: float, current: str | None, now: datetime) -> Decision:
    """The level to drive fs's incident to for this reading, and what stays pending."""
    wanted = fs.level_for(percent, current)
    if rank(wanted) <= rank(current):
        _forget(fs)  # same, lower or resolved: at once
        return Decision(wanted, None)
    climbing = [level for level in fs.thresholds() if rank(current) < rank(level) <= rank(wanted)]
    if all(fs.for_seconds(level) == 0 for level in climbing):
        _forget(fs)
        return Decision(wanted, None)
    at = now.timestamp()
    try:
        since = _load(fs, at)
    except redis.RedisError as exc:
        # Nothing can be held back without its clock: alert at once rather than stay silent.
        log.warning("disk %s: pending levels cannot be read (%s); %s applies at once", fs.path, exc, wanted)
        return Decision(wanted, None)
    since = {level: since.get(level, at) for level in climbing}
    due = [level for level in climbing if at - since[level] >= fs.for_seconds(level)]
    waiting = [level for level in climbing if level not in due]
    level = max(due, key=rank) if due else current
    held_seconds = at - since[level] if due else 0.0
    # Levels at or below the one the incident moves to are done; the others keep their clocks.
    kept = {lvl: t for lvl, t in since.items() if rank(lvl) > rank(level)}
    _save(fs, kept, at)
    pending = None
    if waiting:
        top = max(waiting, key=rank)
        pending = Pending(top, since[top], fs.for_seconds(top))
    return Decision(level, pending, held_seconds)


def _load(fs: WatchedFilesystem, at: float) -> dict[str, float]:
    raw = rd.client().get(_key(fs))
    if raw is None:
        return {}
    data = json.loads(raw)
    if at - data["seen"] > MAX_GAP_SECONDS:
        return {}  # the readings stopped for a while: start again
    return data["since"]


def _save(fs: WatchedFilesystem, since: dict[str, float], at: float) -> None:
    try:
        if since:
            rd.client().set(_key(fs), json.dumps({"since": since, "seen": at}), ex=MAX_GAP_SECONDS)
        else:
            rd.client().delete(_key(fs))
    except redis.RedisError as exc:
        log.warning("disk %s: pending levels cannot be stored (%s)", fs.path, exc)


def _forget(fs: WatchedFilesystem) -> None:
    _save(fs, {}, 0.0)


def current(filesystems: list[WatchedFilesystem], now: float) -> dict[int, Pending]:
    """What is pending now for each filesystem (for the dashboard); empty while Redis cannot be read."""
    if not filesystems:
        return {}
    try:
        raws = rd.client().mget([_key(fs) for fs in filesystems])
    except redis.RedisError:
        return {}
    pending = {}
    for fs, raw in zip(filesystems, raws, strict=True):
        if raw is None:
            continue
        data = json.loads(raw)
        if now - data["seen"] > MAX_GAP_SECONDS:
            continue  # its checks stopped: the next reading starts the clock again
        since = data["since"]
        waiting = [level for level in since if level in fs.thresholds()]
        if waiting:
            top = max(waiting, key=rank)
            pending[fs.pk] = Pending(top, since[top], fs.for_seconds(top))
    return pending
