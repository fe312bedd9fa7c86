"""The table `manage.py gpu_status` prints: what NVML sees, and whose each GPU process is."""

from django.conf import settings

from glmadmin.lib import deadline, nvml
from inference.models import Engine

from . import gpu_health_cycle, gpu_verdict
from .process_table import EngineProcess, ProcessTable
from .templating import size


def lines() -> list[str]:
    """Raises nvml.NvmlError when NVML is present but fails."""
    snapshot = nvml.read()
    if snapshot.status:
        return [snapshot.status]
    engines = list(Engine.objects.filter(host=settings.GLMADMIN_HOST_NAME, pid__isnull=False))
    names = {e.pk: e.name for e in engines}
    table = ProcessTable([EngineProcess(e.pk, e.pid, e.process_started_at) for e in engines])
    out = [f"NVIDIA driver {nvml.driver_version() or '?'}, {len(snapshot.gpus)} GPU(s)", "",
           f"{'GPU':<4} {'name':<28} {'memory':>21} {'util':>5} {'temp':>5} {'power':>13}"]
    for g in snapshot.gpus:
        memory = f"{size(g.memory_used)} / {size(g.memory_total)}"
        power = f"{_num(g.power_draw)} / {_num(g.power_limit)} W"
        out.append(f"{g.index:<4} {g.name[:28]:<28} {memory:>21} {_num(g.utilization):>4}% {_num(g.temperature):>4}C"
                   f" {power:>13}")
    out += ["", f"{'GPU':<4} {'pid':>8} {'name':<24} {'memory':>10}  engine"]
    for g in snapshot.gpus:
        for p in g.processes:
            engine_id = table.engine_of(p.pid)
            owner = "foreign" if engine_id is None else names[engine_id]
            out.append(f"{g.index:<4} {p.pid:>8} {table.name(p.pid)[:24]:<24} {size(p.used_bytes):>10}  {owner}")
    if not any(g.processes for g in snapshot.gpus):
        out.append("(no processes)")
    return out + health_lines(snapshot.gpus)


def health_lines(gpus) -> list[str]:
    """Each GPU's health state with what to do, then every signal ("not supported" where the GPU has none)."""
    out = ["", f"{'GPU':<4} {'health':<9} finding -> action"]
    try:
        readings = gpu_health_cycle.read_now(settings.GLMADMIN_HOST_NAME, gpus)
    except deadline.Stalled as exc:
        return out + [f"health not read: {exc}"]
    for health, state, findings in readings:
        if not findings:
            out.append(f"{health.index:<4} {state:<9}")
        for finding in findings:
            out.append(f"{health.index:<4} {state:<9} {finding.detail} -> {finding.action}")
    for health, _, _ in readings:
        shown = " · ".join(f"{name} {value}" for name, value in gpu_verdict.signals(health).items())
        out.append(f"GPU {health.index} signals: {shown}")
    return out


def _num(value) -> str:
    return "-" if value is None else f"{value:.0f}"
