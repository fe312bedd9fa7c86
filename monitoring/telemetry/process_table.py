"""One pass over the host's processes per cycle: who belongs to which engine, and how much memory a group holds.

An engine is started in its own session, so its process group is the pid the
supervisor recorded; vLLM's GPU memory is held by a child (VLLM::EngineCore),
not by the API server. A pid belongs to an engine when it is in that group or
descends from that pid (a child that called setsid stays a descendant).
NVML may report pids of another pid namespace (a container): those are not in
the table, and count as foreign.
"""

import os
from dataclasses import dataclass
from functools import cached_property

import psutil

from .. import check_stalls

UNKNOWN_NAME = "?"
WALK_SECONDS = 5.0


@dataclass(frozen=True)
class EngineProcess:
    engine_id: int
    pid: int
    create_time: float | None  # tells the engine's pid from a reused one


@dataclass(frozen=True)
class Entry:
    ppid: int
    pgid: int | None
    name: str
    create_time: float


class ProcessTable:
    """Read on first use: a cycle with no engine and no GPU process never walks /proc."""

    def __init__(self, engines: list[EngineProcess]):
        self._engine_list = engines
        self._owners: dict[int, int | None] = {}

    @cached_property
    def entries(self) -> dict[int, Entry]:
        # Reading /proc of a process stuck in the kernel (its name can mean reading its cmdline) may block for
        # good: the walk has a deadline, and one that misses it is a "check stalled" incident (raised on).
        return check_stalls.guard("process-table", "process table", self._walk, seconds=WALK_SECONDS,
                                  what="reading the process table (/proc)")

    def _walk(self) -> dict[int, Entry]:
        entries = {}
        for proc in psutil.process_iter(["ppid", "name", "create_time"]):
            try:
                pgid = os.getpgid(proc.pid)
            except OSError:
                pgid = None
            info = proc.info
            entries[proc.pid] = Entry(info["ppid"] or 0, pgid, info["name"] or UNKNOWN_NAME,
                                      info["create_time"] or 0.0)
        return entries

    @cached_property
    def engines(self) -> dict[int, int]:
        """Engine pid -> engine id, for engines whose recorded pid is still the process they started."""
        return {e.pid: e.engine_id for e in self._engine_list if self._is_same(e)}

    def _is_same(self, engine: EngineProcess) -> bool:
        entry = self.entries.get(engine.pid)
        if entry is None:
            return False
        return engine.create_time is None or abs(entry.create_time - engine.create_time) <= 0.01

    def name(self, pid: int) -> str:
        entry = self.entries.get(pid)
        return entry.name if entry else UNKNOWN_NAME

    def engine_of(self, pid: int) -> int | None:
        """The engine holding pid, or None (foreign, or a pid this namespace cannot see)."""
        if pid not in self._owners:
            self._owners[pid] = self._find_owner(pid)
        return self._owners[pid]

    def _find_owner(self, pid: int) -> int | None:
        entry = self.entries.get(pid)
        if entry is None:
            return None
        if entry.pgid in self.engines:
            return self.engines[entry.pgid]
        seen = set()
        current = pid
        while current and current not in seen:  # walk up to init; the seen set guards a table read mid-change
            if current in self.engines:
                return self.engines[current]
            seen.add(current)
            parent = self.entries.get(current)
            current = parent.ppid if parent else 0
        return None

    def members(self, engine_pid: int) -> list[int]:
        engine_id = self.engines.get(engine_pid)
        return [pid for pid in self.entries if engine_id is not None and self.engine_of(pid) == engine_id]

    def group_rss(self, engine_pid: int) -> int | None:
        """Resident memory of the engine's whole process tree, or None when it is not running."""
        if engine_pid not in self.engines:
            return None
        total = 0
        for pid in self.members(engine_pid):
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue  # exited since the table was read
        return total
