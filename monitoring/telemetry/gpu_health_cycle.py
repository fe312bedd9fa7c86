"""The health part of a sampling cycle: each GPU's signals (gpu_health), the Xids the listener caught,
counter growth since the previous cycle, judged (gpu_verdict) with the editable limits (TelemetryRules).

Counters such as PCIe replays only mean something as growth: the previous cycle's values are kept in Redis
(one key per host, swapped in one round trip), like the engines' scrape windows, so every worker process
of the host continues the same series.
"""

import json
import logging
import time

from glmadmin.lib import nvml
from glmadmin.lib import redis as rd

from ..models import TelemetryRules
from . import gpu_health, gpu_verdict, xid_listener
from .readings import GpuHealthReading, GpuReading

log = logging.getLogger(__name__)

COUNTERS_TTL = 3600


def counters_key(host: str) -> str:
    return rd.key("telemetry", "gpu-counters", host)


def read(host: str, gpus: tuple[GpuReading, ...], gpu_status: str) -> tuple[GpuHealthReading, ...]:
    """Every GPU's health this cycle; () on a machine without GPUs, with the rules off, or when NVML cannot
    even count the GPUs (the failing-NVML rule covers that)."""
    if gpu_status == nvml.NO_GPU:
        return ()
    rules = TelemetryRules.current()
    if not rules.gpu_health_enabled:
        return ()
    try:
        healths = gpu_health.read_all(len(gpus) if gpus and not gpu_status else None)
    except nvml.NvmlError as exc:
        log.warning("GPU health not read: %s", exc)
        return ()
    if not healths:
        return ()
    if any(h.answering for h in healths):
        xid_listener.ensure(host)
    now = time.time()
    previous = _swap_counters(host, healths, now)
    xids = xid_listener.recent(host, now - 60 * rules.gpu_xid_hold_minutes)
    limits = gpu_verdict.Limits(retired_pages=rules.gpu_retired_pages_limit,
                                pcie_replays_per_minute=rules.gpu_pcie_replays_per_minute,
                                nvlink_errors_per_minute=rules.gpu_nvlink_errors_per_minute,
                                busy_percent=rules.imbalance_busy_percent)
    utilization = {g.index: g.utilization for g in gpus}
    readings = []
    for health in healths:
        rates = _rates(health, previous.get(str(health.index)), now)
        state, findings = gpu_verdict.assess(health, [x for x in xids if x.index == health.index], rates, limits,
                                             utilization.get(health.index))
        readings.append(GpuHealthReading(health.index, state, tuple(findings), gpu_verdict.signals(health)))
    return tuple(readings)


def _nvlink_total(health: gpu_health.GpuHealth) -> int | None:
    return None if health.nvlink_errors is None else sum(health.nvlink_errors.values())


def _swap_counters(host: str, healths, now: float) -> dict:
    current = {str(h.index): {"at": now, "replays": h.pcie_replays, "nvlink": _nvlink_total(h)}
               for h in healths if h.answering}
    raw = rd.client().set(counters_key(host), json.dumps(current), ex=COUNTERS_TTL, get=True)
    return json.loads(raw) if raw else {}


def _rates(health: gpu_health.GpuHealth, previous: dict | None, now: float) -> gpu_verdict.Rates:
    if previous is None or not health.answering or now <= previous["at"]:
        return gpu_verdict.Rates()
    minutes = (now - previous["at"]) / 60

    def per_minute(value, before):
        # A counter that went down was reset (driver reload, GPU reset): no growth known this cycle.
        if value is None or before is None or value < before:
            return None
        return (value - before) / minutes

    return gpu_verdict.Rates(pcie_replays=per_minute(health.pcie_replays, previous.get("replays")),
                             nvlink_errors=per_minute(_nvlink_total(health), previous.get("nvlink")))


def read_now(host: str, gpus: tuple, hold_minutes: int | None = None) -> list[tuple[gpu_health.GpuHealth, str, list]]:
    """(signals, state, findings) of every GPU now, for `gpu_status`: one look, so no counter growth; the Xids
    are those the sampler's listener recorded (none when Redis cannot be read)."""
    rules = TelemetryRules.current()
    limits = gpu_verdict.Limits(retired_pages=rules.gpu_retired_pages_limit, busy_percent=rules.imbalance_busy_percent)
    now = time.time()
    try:
        xids = xid_listener.recent(host, now - 60 * (hold_minutes or rules.gpu_xid_hold_minutes))
    except Exception:  # noqa: BLE001 - Redis down: the signals NVML gives are still worth showing
        log.warning("recent Xid events not read", exc_info=True)
        xids = []
    utilization = {g.index: g.utilization for g in gpus}
    out = []
    for health in gpu_health.read_all(len(gpus) or None):
        state, findings = gpu_verdict.assess(health, [x for x in xids if x.index == health.index],
                                             gpu_verdict.Rates(), limits, utilization.get(health.index))
        out.append((health, state, findings))
    return out
