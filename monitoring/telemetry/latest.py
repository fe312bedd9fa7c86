"""The latest cycle of each host, kept in Redis so the dashboard and /metrics read one key, never NVML or the engines.

One hash, a field per host: every page view and scrape reads all hosts in one round trip.
"""

import dataclasses
import json
from datetime import datetime, timedelta

from django.utils import timezone

from glmadmin.lib import redis as rd

from .readings import Cycle, EngineReading, Finding, GpuHealthReading, GpuProcess, GpuReading, HostReading

KEEP_SECONDS = 3600  # long enough to show "last sample 20 min ago" when a host's sampler stopped


def _key() -> str:
    return rd.key("telemetry", "latest_by_host")


def remember(cycle: Cycle) -> None:
    pipe = rd.client().pipeline(transaction=False)
    pipe.hset(_key(), cycle.host_name, dumps(cycle))
    pipe.expire(_key(), KEEP_SECONDS)
    pipe.execute()


def load(host: str) -> Cycle | None:
    raw = rd.client().hget(_key(), host)
    return loads(raw) if raw else None


def load_all() -> dict[str, Cycle]:
    """host -> its latest cycle, by host name; a host silent for KEEP_SECONDS is forgotten."""
    cycles = {host: loads(raw) for host, raw in sorted(rd.client().hgetall(_key()).items())}
    gone = [host for host, cycle in cycles.items()
            if timezone.now() - cycle.taken_at > timedelta(seconds=KEEP_SECONDS)]
    if gone:
        rd.client().hdel(_key(), *gone)
    return {host: cycle for host, cycle in cycles.items() if host not in gone}


def dumps(cycle: Cycle) -> str:
    data = dataclasses.asdict(cycle)
    data["taken_at"] = cycle.taken_at.isoformat()
    return json.dumps(data)


def loads(raw: str) -> Cycle:
    data = json.loads(raw)
    gpus = tuple(GpuReading(**{**g, "processes": tuple(GpuProcess(**p) for p in g["processes"])})
                 for g in data["gpus"])
    engines = tuple(EngineReading(**{**e, "gpus": tuple(e["gpus"])}) for e in data["engines"])
    health = tuple(GpuHealthReading(**{**h, "findings": tuple(Finding(**f) for f in h["findings"])})
                   for h in data.get("gpu_health", ()))  # a cycle stored before health was read has none
    return Cycle(taken_at=datetime.fromisoformat(data["taken_at"]), host_name=data["host_name"],
                 host=HostReading(**data["host"]), gpus=gpus, gpu_status=data["gpu_status"], engines=engines,
                 gpu_health=health)
