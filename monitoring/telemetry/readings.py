"""What one sampling cycle saw: the contract between the samplers and everything that reads them
(storage, the rules, the dashboard). Units are plain: bytes, percent 0-100, seconds, watts, °C.
A value the source could not give is None, never 0, so "unknown" is not mistaken for "idle".
"""
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_bytes: int | None
    name: str  # command name, e.g. "VLLM::EngineCore" or "python3"
    engine_id: int | None  # the engine whose process tree holds it; None = foreign


@dataclass(frozen=True)
class GpuReading:
    index: int
    uuid: str
    name: str
    memory_used: int
    memory_total: int
    utilization: float | None  # percent of time a kernel ran
    temperature: float | None
    power_draw: float | None
    power_limit: float | None
    processes: tuple[GpuProcess, ...] = ()

    @property
    def memory_percent(self) -> float:
        return 100.0 * self.memory_used / self.memory_total if self.memory_total else 0.0


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a GPU's health (see gpu_verdict), with what to do about it."""

    signal: str  # xid, nvml, ecc, remap, retired, clocks, pcie-width, pcie-gen, pcie-replay, nvlink
    state: str  # degraded or failing
    detail: str  # the reading, in words
    action: str  # what to do, in words
    kind: str  # restart-engine / reset-gpu / replace / check: what glmadmin may do about it


@dataclass(frozen=True)
class GpuHealthReading:
    index: int
    state: str  # ok / degraded / failing
    findings: tuple[Finding, ...] = ()
    signals: dict[str, str] = field(default_factory=dict)  # signal -> its value in words, or "not supported"


@dataclass(frozen=True)
class EngineReading:
    engine_id: int
    gpus: tuple[int, ...]  # the GPU indices the engine was given (empty: CPU engine)
    kv_cache_usage: float | None  # percent
    requests_running: float | None
    requests_waiting: float | None
    ttft_p50: float | None  # seconds, over the last window only (histogram deltas)
    ttft_p95: float | None
    generation_tokens_per_s: float | None  # over the last window
    prefix_cache_hit_rate: float | None  # percent, over the last window
    rss_bytes: int | None  # the engine's whole process group
    metrics_error: str = ""  # why /metrics gave nothing this cycle ("" when it did)


@dataclass(frozen=True)
class HostReading:
    cpu_percent: float | None
    memory_used: int
    memory_total: int


@dataclass(frozen=True)
class Cycle:
    taken_at: datetime
    host_name: str  # the glmadmin host that took it (GLMADMIN_HOST_NAME): its GPUs, its engines, itself
    host: HostReading
    gpus: tuple[GpuReading, ...] = ()
    # "" when NVML answered; "no GPU" on a machine without NVIDIA GPUs; else the NVML error.
    gpu_status: str = ""
    engines: tuple[EngineReading, ...] = field(default=())
    gpu_health: tuple[GpuHealthReading, ...] = ()  # per GPU, also for GPUs NVML no longer answers for
