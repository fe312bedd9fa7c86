"""The health part of a sampling cycle: each GPU's signals (gpu_health), the Xids the listener caught,
counter growth since the previous cycle, judged (gpu_verdict) with the editable limits (TelemetryRules).

Counters such as PCIe replays only mean something as growth: the previous cycle's values are kept in Redis
(one key per host), like the engines' scrape windows, so every worker process of the host continues the same
series.
"""

import json
import logging
import time

from django.conf import settings

from glmadmin.lib import deadline, nvml
from glmadmin.lib import redis as rd

from .. import check_stalls
from ..models import TelemetryRules
from . import gpu_health, gpu_verdict, xid_listener
from .readings import GpuHealthReading, GpuReading

log = logging.getLogger(__name__)

COUNTERS_TTL = 3600
# The health read asks NVML more (ECC, remapping, PCIe, NVLink) than the main read: a GPU that falls off the
# bus in between hangs it the same way, so it has its own deadline ("check stalled" when missed).
HEALTH_SUBJECT = "gpu-health"
HEALTH_SECONDS = 5.0


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
        healths = _read_all(len(gpus) if gpus and not gpu_status else None)
    except (nvml.NvmlError, deadline.Stalled) as exc:
        log.warning("GPU health not read: %s", exc)
        return ()
    if not healths:
        return ()
    if any(h.answering for h in healths):
        xid_listener.ensure(host)
    now = time.time()
    rates = _judge_counters(host, healths, now)
    xids = xid_listener.recent(host, now - 60 * rules.gpu_xid_hold_minutes)
    limits = gpu_verdict.Limits(retired_pages=rules.gpu_retired_pages_limit,
                                pcie_replays_per_minute=rules.gpu_pcie_replays_per_minute,
                                nvlink_errors_per_minute=rules.gpu_nvlink_errors_per_minute,
                                busy_percent=rules.imbalance_busy_percent)
    utilization = {g.index: g.utilization for g in gpus}
    readings = []
    for health in healths:
        state, findings = gpu_verdict.assess(health, [x for x in xids if x.index == health.index],
                                             rates.get(health.index, gpu_verdict.Rates()), limits,
                                             utilization.get(health.index))
        readings.append(GpuHealthReading(health.index, state, tuple(findings), gpu_verdict.signals(health)))
    return tuple(readings)


def _read_all(count: int | None) -> tuple[gpu_health.GpuHealth, ...]:
    return check_stalls.guard(HEALTH_SUBJECT, "GPU health read", gpu_health.read_all, count,
                              seconds=HEALTH_SECONDS, what="reading GPU health (NVML)")


def hung() -> bool:
    """Whether this host's health read from an earlier cycle still hangs (asking again would only join it)."""
    return f"{HEALTH_SUBJECT}:{settings.GLMADMIN_HOST_NAME}" in deadline.hung()


def _nvlink_total(health: gpu_health.GpuHealth) -> int | None:
    return None if health.nvlink_errors is None else sum(health.nvlink_errors.values())


def _judge_counters(host: str, healths, now: float) -> dict[int, gpu_verdict.Rates]:
    """Each GPU's counter growth since the previous cycle (PCIe replays) or the previous NVLink reading (read
    once every gpu_health.NVLINK_REFRESH seconds: its growth holds until the next one), kept in Redis."""
    client = rd.client()
    raw = client.get(counters_key(host))
    previous = json.loads(raw) if raw else {}
    rates, current = {}, {}
    for health in healths:
        if not health.answering:
            continue
        before = previous.get(str(health.index), {})
        replays = _per_minute(health.pcie_replays, before.get("replays"), now - before.get("at", now))
        nvlink, total = None, _nvlink_total(health)
        if health.nvlink_read_at is not None and health.nvlink_read_at == before.get("nvlink_at"):
            nvlink = before.get("nvlink_rate")  # the same reading as last cycle: the same growth
        elif before.get("nvlink_at") is not None and health.nvlink_read_at is not None:
            nvlink = _per_minute(total, before.get("nvlink"), health.nvlink_read_at - before["nvlink_at"])
        rates[health.index] = gpu_verdict.Rates(pcie_replays=replays, nvlink_errors=nvlink)
        current[str(health.index)] = {"at": now, "replays": health.pcie_replays, "nvlink": total,
                                      "nvlink_at": health.nvlink_read_at, "nvlink_rate": nvlink}
    client.set(counters_key(host), json.dumps(current), ex=COUNTERS_TTL)
    return rates


def _per_minute(value, before, seconds: float) -> float | None:
    # A counter that went down was reset (driver reload, GPU reset): no growth known this time.
    if value is None or before is None or seconds <= 0 or value < before:
        return None
    return (value - before) * 60 / seconds


def read_now(host: str, gpus: tuple) -> list[tuple[gpu_health.GpuHealth, str, list]]:
    """(signals, state, findings) of every GPU now, for `gpu_status`: one look, so no counter growth; the Xids
    are those the sampler's listener recorded (none when Redis cannot be read)."""
    rules = TelemetryRules.current()
    limits = gpu_verdict.Limits(retired_pages=rules.gpu_retired_pages_limit, busy_percent=rules.imbalance_busy_percent)
    now = time.time()
    try:
        xids = xid_listener.recent(host, now - 60 * rules.gpu_xid_hold_minutes)
    except Exception:  # noqa: BLE001 - Redis down: the signals NVML gives are still worth showing
        log.warning("recent Xid events not read", exc_info=True)
        xids = []
    utilization = {g.index: g.utilization for g in gpus}
    out = []
    for health in _read_all(len(gpus) or None):
        state, findings = gpu_verdict.assess(health, [x for x in xids if x.index == health.index],
                                             gpu_verdict.Rates(), limits, utilization.get(health.index))
        out.append((health, state, findings))
    return out
