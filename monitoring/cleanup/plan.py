"""Scan a policy's root and plan what goes: the same plan for a dry run and a real one.

Over the limit, files old enough (mtime and ctime), matching the include
patterns and no exclude pattern, and open or mapped by no process, are chosen
oldest first until the root would be under its limit. When the open-file check
cannot read every process, the plan says which; the real run then asks the
kernel about each file before removing it and keeps those it cannot ask about.
"""

import fnmatch
import math
import os
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import accumulate
from operator import itemgetter

from django.conf import settings

from glmadmin.lib import openfiles, safewalk
from inference.models import Engine, EngineState

from .policy import split_patterns


class Kept:
    """Reasons a file stays, as counted in a run's record (besides safewalk.Skip)."""

    TOO_YOUNG = "too_young"
    EXCLUDED = "excluded"
    OPEN = "open"
    UNDER_LIMIT = "not_needed"  # eligible, but the root was under its limit without it
    CHANGED = safewalk.Held.CHANGED
    UNKNOWN = safewalk.Held.UNKNOWN


@dataclass
class Plan:
    scan: safewalk.Scan
    limit: int
    cutoff: float  # files whose max(mtime, ctime) is at or before this are old enough
    chosen: list[tuple] = field(default_factory=list)  # oldest first, or in the scan's order if all of them go
    chosen_bytes: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    unreadable: list[int] = field(default_factory=list)  # pids the open-file check could not read

    @property
    def size_before(self) -> int:
        return self.scan.total_bytes


class Matcher:
    """Include/exclude globs compiled once: a pattern with / is matched on the relative path, else on the name."""

    def __init__(self, include: str, exclude: str):
        self.include_all = split_patterns(include) in ([], ["*"]) and not split_patterns(exclude)
        self.include = self._compile(split_patterns(include) or ["*"])
        self.exclude = self._compile(split_patterns(exclude))

    @staticmethod
    def _compile(patterns):
        by_name = [fnmatch.translate(p) for p in patterns if "/" not in p]
        by_path = [fnmatch.translate(p) for p in patterns if "/" in p]
        return (re.compile("|".join(by_name)) if by_name else None,
                re.compile("|".join(by_path)) if by_path else None)

    @staticmethod
    def _hit(compiled, relpath_of, name) -> bool:
        by_name, by_path = compiled
        return bool((by_name and by_name.match(name)) or (by_path and by_path.match(relpath_of())))

    def wanted(self, relpath_of, name: str) -> bool:
        if self.include_all:
            return True
        return self._hit(self.include, relpath_of, name) and not self._hit(self.exclude, relpath_of, name)


def engine_dirs() -> list[str]:
    """Directories of engines that are not stopped: their model and their data directory."""
    running = Engine.objects.exclude(state__in=[EngineState.STOPPED, EngineState.FAILED])
    dirs = []
    for engine in running.only("name", "model"):
        dirs.append(os.path.realpath(settings.ENGINE_DIR / engine.name))
        if engine.model.startswith("/"):
            dirs.append(os.path.realpath(engine.model))
    return dirs


def protected_below(root: str, dirs: list[str]) -> tuple[set[str], str | None]:
    """The engine directories below root (relative), and the one root itself lies in, if any."""
    real_root = os.path.realpath(root)
    inside, covering = set(), None
    for d in dirs:
        if real_root == d or real_root.startswith(d.rstrip("/") + "/"):
            covering = d
        elif d.startswith(real_root.rstrip("/") + "/"):
            inside.add(os.path.relpath(d, real_root))
    return inside, covering


def plan(root: str, *, limit: int, min_age_hours: float, include: str, exclude: str, now: float,
         open_files=openfiles.open_inodes) -> Plan:
    """Scan the canonical directory root and choose what to remove (raises OSError if root cannot be opened)."""
    protected, covering = protected_below(root, engine_dirs())
    cutoff = now - min_age_hours * 3600
    if covering:
        # The whole root belongs to a running engine: measure it, touch nothing.
        result = Plan(safewalk.scan(root, older_than=-math.inf), limit, cutoff)
        result.kept[safewalk.Skip.PROTECTED] = result.scan.count
        return result
    # Only the files old enough are listed one by one; the younger ones are counted and measured.
    scanned = safewalk.scan(root, protected=protected, older_than=cutoff)
    result = Plan(scanned, limit, cutoff)
    if scanned.total_bytes <= limit:
        return result
    candidates = _old_and_wanted(scanned, Matcher(include, exclude), result.kept)
    busy = open_files() if candidates else openfiles.OpenFiles()
    result.unreadable = busy.unreadable
    _choose(result, candidates, busy.on(scanned.dev), scanned.total_bytes - limit)
    return result


def _old_and_wanted(scanned: safewalk.Scan, matcher: Matcher, kept: dict) -> list[tuple]:
    """Files old enough that the patterns let go, in the scan's order."""
    old = scanned.files  # the walk listed only those at or before the cutoff
    if scanned.young:
        kept[Kept.TOO_YOUNG] = scanned.young
    if matcher.include_all:
        candidates = old
    else:
        candidates = [f for f in old if matcher.wanted(lambda f=f: scanned.relpath(f[0], f[1]), f[1])]
        if len(candidates) < len(old):
            kept[Kept.EXCLUDED] = len(old) - len(candidates)
    return candidates


def _choose(result: Plan, candidates: list[tuple], busy: set[int], excess: int) -> None:
    """Oldest first, past the open ones, until excess bytes are chosen.

    When every free candidate is needed they are taken in the scan's order (directory by directory), which
    spares sorting 100,000s of files; otherwise the oldest whose sizes reach excess, oldest first.
    """
    # The files open on the root's filesystem are a few, the candidates 100,000s: look for any of them (in C)
    # before building a second list.
    free = candidates
    if busy and not busy.isdisjoint(map(itemgetter(2), candidates)):
        free = [f for f in candidates if f[2] not in busy]
        result.kept[Kept.OPEN] = len(candidates) - len(free)
    free_bytes = sum(map(itemgetter(3), free))
    if free_bytes <= excess:
        result.chosen, result.chosen_bytes = free, free_bytes
        return
    free = sorted(free, key=itemgetter(4))  # a new list: the scan's own stays in its order
    running = list(accumulate(map(itemgetter(3), free)))
    reached = bisect_left(running, excess)
    result.chosen, result.chosen_bytes = free[:reached + 1], running[reached]
    result.kept[Kept.UNDER_LIMIT] = len(free) - len(result.chosen)
