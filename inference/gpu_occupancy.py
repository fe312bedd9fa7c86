"""Before an engine starts: are its GPUs free of other processes' memory?

A process still holding a GPU's memory (the EngineCore of an engine killed half-way, a notebook, another
tool) makes a new vLLM fail to allocate, and that shows only once the model has loaded, as a crash into
back-off, again and again. NVML tells beforehand, so the engine waits instead, with the reason and an
incident, and starts by itself once the GPU is free.

The engine is not running when this is asked, so every process on its GPUs is foreign to it: its own earlier
process is as much in the way as a stranger's. Processes below the limit (a monitoring agent's context, a few
hundred MiB) do not stop a start: vLLM leaves room beside its reservation for such.
"""

import logging
from dataclasses import dataclass

import psutil

from alerts.incidents import drive
from alerts.levels import Level
from alerts.models import Incident
from glmadmin.lib import nvml

log = logging.getLogger(__name__)
GIB = 2**30
WAITING = "waiting: "  # how the reason of an engine kept from starting begins


@dataclass(frozen=True)
class Holder:
    gpu: int
    pid: int
    used_bytes: int
    name: str

    def describe(self) -> str:
        return f"GPU {self.gpu} holds {self.used_bytes / GIB:.1f} GiB of foreign process {self.pid} ({self.name})"


def holders(gpus: list[int], limit_gib: float) -> list[Holder]:
    """The processes holding more than limit_gib of one of `gpus`; none where NVML is absent or cannot tell."""
    if not gpus:
        return []
    try:
        snapshot = nvml.read()
    except nvml.NvmlError as exc:
        # A broken NVML must not keep every engine down: the start goes ahead as on a machine without it (the
        # GPU checks report the NVML failure on their own).
        log.warning("GPU occupancy unknown before a start: %s", exc)
        return []
    found = []
    for gpu in snapshot.gpus:
        if gpu.index not in gpus:
            continue
        for proc in gpu.processes:
            if proc.used_bytes is not None and proc.used_bytes > limit_gib * GIB:
                found.append(Holder(gpu.index, proc.pid, proc.used_bytes, _name(proc.pid)))
    return found


def waiting_reason(found: list[Holder]) -> str:
    return WAITING + "; ".join(h.describe() for h in found)


def _name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "?"  # gone since NVML listed it, or in another pid namespace (a container)


def _source(engine) -> str:
    return f"engine-gpu:{engine.host}:{engine.name}"


def open_incident(engine, reason: str) -> None:
    # Orange as a failed engine: this engine does not serve, but red would pause every other one too.
    drive(_source(engine), Level.ORANGE, kind=Incident.Kind.ENGINE, title=f"Engine {engine.name} waits for its GPUs",
          value=None, message=f"{reason}; it starts by itself once the GPU is free", host=engine.host)


def resolve_incident(engine, message: str) -> None:
    drive(_source(engine), None, kind=Incident.Kind.ENGINE, title=f"Engine {engine.name} waits for its GPUs",
          value=None, message=message, host=engine.host)
