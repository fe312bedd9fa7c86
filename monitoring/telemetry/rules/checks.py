"""The conditions: what each rule sees in one cycle, as observations (plain functions, no queries).

Each check yields an Observation per subject it can judge this cycle. A subject it cannot judge
(no reading, a value the source could not give) yields nothing: unknown is neither a problem
nor an all-clear, and a streak does not survive a long silence (see rule_state.Track).
"""

import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field

from alerts.levels import Level
from alerts.models import Incident
from inference.models import Engine, EngineState

from ...models.telemetry_rules import RESERVATION_MARGIN, TelemetryRules
from ..readings import Cycle, EngineReading, GpuReading
from ..remedy import drift_condition, gpu_memory_condition
from .state import Baseline, Outcome, make_source, parse_source

GIB = 1024**3
BASELINE_MIN_SAMPLES = 6  # p95 values (cycles with traffic) a baseline needs at the least
BASELINE_MAX_SAMPLES = 2000
# vLLM reserves --gpu-memory-utilization x the GPU's memory up front (KV cache included) and holds it
# for its whole life (Engine.reservation). Beyond that plus RESERVATION_MARGIN (of the GPU's memory:
# CUDA context, NCCL buffers) the engine has grown, which a restart cures.


@dataclass(frozen=True)
class Rule:
    name: str  # also the last part of its incidents' source
    enabled_field: str
    level: str
    kind: str


GPU_MEMORY = Rule("gpu-memory", "gpu_memory_enabled", Level.ORANGE, Incident.Kind.GPU)
KV_CACHE = Rule("kv-cache", "kv_cache_enabled", Level.YELLOW, Incident.Kind.TELEMETRY)
FOREIGN = Rule("foreign", "foreign_enabled", Level.YELLOW, Incident.Kind.GPU)
IMBALANCE = Rule("imbalance", "imbalance_enabled", Level.YELLOW, Incident.Kind.GPU)
STUCK = Rule("stuck", "stuck_enabled", Level.ORANGE, Incident.Kind.ENGINE)
TTFT = Rule("ttft", "ttft_enabled", Level.YELLOW, Incident.Kind.TELEMETRY)
DRIFT = Rule("ttft-drift", "drift_enabled", Level.YELLOW, Incident.Kind.TELEMETRY)
METRICS = Rule("metrics", "metrics_missing_enabled", Level.YELLOW, Incident.Kind.TELEMETRY)
NVML = Rule("nvml", "nvml_enabled", Level.ORANGE, Incident.Kind.GPU)
GPU_FAILING = Rule("gpu-failing", "gpu_health_enabled", Level.ORANGE, Incident.Kind.GPU)
GPU_DEGRADED = Rule("gpu-degraded", "gpu_health_enabled", Level.YELLOW, Incident.Kind.GPU)
RULES = {rule.name: rule for rule in (GPU_MEMORY, KV_CACHE, FOREIGN, IMBALANCE, STUCK, TTFT, DRIFT, METRICS, NVML,
                                      GPU_FAILING, GPU_DEGRADED)}


@dataclass(frozen=True)
class Observation:
    rule: Rule
    source: str
    outcome: str
    value: float | None
    title: str
    detail: str  # the reading in words, for the incident's message
    engine: Engine | None = None
    restart: bool = False  # raising it restarts `engine`
    stop: bool = False  # raising it drains and stops `engine` (its GPU is failing)
    withheld: str = ""  # why a restart the rule would make does not help this time ("" when it does)
    # The condition a remedy ladder reads again after each step (monitoring/telemetry/remedy.py); None: a restart
    # goes straight to the full one (a stuck engine, an application fault).
    remedy: dict | None = None
    for_seconds: float = 0
    min_cycles: int = 1


@dataclass
class Context:
    cycle: Cycle
    rules: TelemetryRules
    host: str
    engines: dict[int, Engine]  # this host's engines
    baselines: dict[int, Baseline]
    known_sources: set[str]
    readings: dict[int, EngineReading] = field(init=False)

    def __post_init__(self):
        self.readings = {r.engine_id: r for r in self.cycle.engines}

    @property
    def gpus_readable(self) -> bool:
        return self.cycle.gpu_status == ""

    def ready_engines(self) -> Iterator[tuple[Engine, EngineReading | None]]:
        for engine in self.engines.values():
            if engine.enabled and engine.state == EngineState.READY:
                yield engine, self.readings.get(engine.pk)

    def engine_on_gpu(self, index: int) -> Engine | None:
        return next((e for e in self.engines.values() if e.enabled and index in e.gpus), None)

    def source(self, subject: str, rule: Rule, extra: str = "") -> str:
        return make_source(self.host, subject, rule.name, extra)


def _level_outcome(value: float, threshold: float, margin: float) -> str:
    if value > threshold:
        return Outcome.TRUE
    return Outcome.CLEAR if value < threshold - margin else Outcome.HOLD


def gpu_memory(ctx: Context) -> Iterator[Observation]:
    """A full GPU is raised whoever fills it; the engine is restarted only when its own growth filled it."""
    if not ctx.gpus_readable:
        return
    rules = ctx.rules
    for gpu in ctx.cycle.gpus:
        percent = gpu.memory_percent
        engine = ctx.engine_on_gpu(gpu.index)
        withheld = restart_withheld(gpu, engine, rules.foreign_gib) if rules.gpu_memory_restart and engine else ""
        yield Observation(
            GPU_MEMORY, ctx.source(f"gpu{gpu.index}", GPU_MEMORY),
            _level_outcome(percent, rules.gpu_memory_percent, rules.clear_margin), percent,
            title=f"GPU {gpu.index} memory above {rules.gpu_memory_percent:g} %",
            detail=f"GPU {gpu.index}{f' (engine {engine.name})' if engine else ''} memory at {percent:.1f} % "
                   f"({gpu.memory_used / GIB:.1f} of {gpu.memory_total / GIB:.1f} GiB)",
            engine=engine, restart=rules.gpu_memory_restart and engine is not None and not withheld,
            withheld=withheld, remedy=gpu_memory_condition(gpu.index, rules.gpu_memory_percent),
            for_seconds=rules.gpu_memory_seconds)


def restart_withheld(gpu: GpuReading, engine: Engine, foreign_gib: float) -> str:
    """Why restarting `engine` would not free this GPU ("" when it would), in words for the incident.

    A restart of an engine that holds only what it reserved frees nothing for long (it reserves the
    same again), and one next to a big foreign process fails vLLM's free-memory check at start-up,
    turning a warning into an outage.
    """
    prefix = f"engine {engine.name} not restarted: "
    others = [p for p in gpu.processes if p.engine_id != engine.pk and p.used_bytes is not None
              and p.used_bytes > foreign_gib * GIB]
    if others:
        biggest = max(others, key=lambda p: p.used_bytes)
        who = f"pid {biggest.pid} ({biggest.name or 'unknown command'})"
        who = f"foreign {who}" if biggest.engine_id is None else f"{who} of another engine"
        return f"{prefix}{who} holds {biggest.used_bytes / GIB:.1f} GiB on GPU {gpu.index}"
    own = [p.used_bytes for p in gpu.processes if p.engine_id == engine.pk]
    if not own:
        return f"{prefix}none of its processes holds memory on GPU {gpu.index}"
    if None in own:
        return f"{prefix}NVML does not say how much its processes hold on GPU {gpu.index}"
    held, share = sum(own), engine.reservation()
    if held <= (share + RESERVATION_MARGIN) * gpu.memory_total:
        how = ("by gpu_memory_utilization" if engine.gpu_memory_utilization
               else "vLLM's default gpu_memory_utilization")
        return f"{prefix}it holds what it reserved ({held / GIB:.1f} GiB; {100 * share:.0f} % {how})"
    return ""


def kv_cache(ctx: Context) -> Iterator[Observation]:
    rules = ctx.rules
    for engine, reading in ctx.ready_engines():
        if reading is None or reading.kv_cache_usage is None:
            continue
        usage = reading.kv_cache_usage
        yield Observation(
            KV_CACHE, ctx.source(f"engine{engine.pk}", KV_CACHE),
            _level_outcome(usage, rules.kv_cache_percent, rules.clear_margin), usage,
            title=f"KV cache of engine {engine.name} above {rules.kv_cache_percent:g} %",
            detail=f"KV cache of engine {engine.name} {usage:.1f} % used", engine=engine,
            for_seconds=rules.kv_cache_seconds)


def foreign_processes(ctx: Context) -> Iterator[Observation]:
    if not ctx.gpus_readable:
        return
    rules = ctx.rules
    for gpu in ctx.cycle.gpus:
        engine = ctx.engine_on_gpu(gpu.index)
        if engine is None:
            continue  # a GPU no engine was given is anybody's
        seen = set()
        for proc in gpu.processes:
            if proc.engine_id is not None or proc.used_bytes is None:
                continue
            source = ctx.source(f"gpu{gpu.index}", FOREIGN, str(proc.pid))
            seen.add(source)
            gib = proc.used_bytes / GIB
            yield Observation(
                FOREIGN, source, Outcome.TRUE if gib > rules.foreign_gib else Outcome.CLEAR, gib,
                title=f"Foreign process {proc.pid} on GPU {gpu.index} of engine {engine.name}",
                detail=f"pid {proc.pid} ({proc.name or 'unknown command'}) holds {gib:.1f} GiB on GPU {gpu.index}, "
                       f"which engine {engine.name} uses", engine=engine, for_seconds=rules.foreign_seconds)
        prefix = ctx.source(f"gpu{gpu.index}", FOREIGN) + ":"
        for source in sorted(ctx.known_sources - seen):
            if source.startswith(prefix):  # NVML answered and the process is gone
                pid = source.removeprefix(prefix)
                yield Observation(FOREIGN, source, Outcome.CLEAR, 0.0, title="",
                                  detail=f"pid {pid} no longer holds memory on GPU {gpu.index}")


def imbalance(ctx: Context) -> Iterator[Observation]:
    if not ctx.gpus_readable:
        return
    rules = ctx.rules
    gpus = {gpu.index: gpu for gpu in ctx.cycle.gpus}
    for engine, _ in ctx.ready_engines():
        readings: list[GpuReading | None] = [gpus.get(index) for index in engine.gpus]
        if len(readings) < 2 or any(g is None or g.utilization is None for g in readings):
            continue
        idle = [g for g in readings if g.utilization < rules.imbalance_idle_percent]
        others = [g for g in readings if g not in idle]
        lopsided = bool(idle) and bool(others) and all(g.utilization > rules.imbalance_busy_percent for g in others)
        names = ", ".join(f"GPU {g.index} ({g.utilization:.0f} %)" for g in readings)
        detail = (f"{_gpu_list(idle)} idle while {_gpu_list(others)} busy on engine {engine.name}: {names}"
                  if lopsided else f"utilisation on engine {engine.name}: {names}")
        yield Observation(
            IMBALANCE, ctx.source(f"engine{engine.pk}", IMBALANCE), Outcome.TRUE if lopsided else Outcome.CLEAR,
            min(g.utilization for g in readings), title=f"Tensor-parallel imbalance on engine {engine.name}",
            detail=detail, engine=engine, for_seconds=rules.imbalance_seconds)


def _gpu_list(gpus: list[GpuReading]) -> str:
    indices = ", ".join(str(g.index) for g in gpus)
    return f"GPU {indices}" if len(gpus) == 1 else f"GPUs {indices}"


def stuck(ctx: Context) -> Iterator[Observation]:
    rules = ctx.rules
    for engine, reading in ctx.ready_engines():
        if reading is None or reading.generation_tokens_per_s is None:
            continue
        waiting, running = reading.requests_waiting, reading.requests_running
        if waiting is None and running is None:
            continue
        in_flight = (waiting or 0) + (running or 0)
        is_stuck = in_flight > 0 and reading.generation_tokens_per_s == 0
        yield Observation(
            STUCK, ctx.source(f"engine{engine.pk}", STUCK), Outcome.TRUE if is_stuck else Outcome.CLEAR, in_flight,
            title=f"Engine {engine.name} stuck",
            detail=(f"engine {engine.name} has {waiting or 0:.0f} request(s) waiting and {running or 0:.0f} running "
                    f"but generated no token" if is_stuck else
                    f"engine {engine.name} generates {reading.generation_tokens_per_s:.1f} tokens/s with "
                    f"{in_flight:.0f} request(s) in flight"),
            engine=engine, restart=rules.stuck_restart, for_seconds=rules.stuck_seconds)


def ttft(ctx: Context) -> Iterator[Observation]:
    rules = ctx.rules
    for engine, reading in ctx.ready_engines():
        if reading is None or reading.ttft_p95 is None:
            continue
        p95 = reading.ttft_p95
        yield Observation(
            TTFT, ctx.source(f"engine{engine.pk}", TTFT),
            Outcome.TRUE if p95 > rules.ttft_p95_seconds else Outcome.CLEAR, p95,
            title=f"Slow first token on engine {engine.name}",
            detail=f"time to first token p95 {p95:.2f} s on engine {engine.name} "
                   f"(threshold {rules.ttft_p95_seconds:g} s)",
            engine=engine, for_seconds=rules.ttft_seconds)


def drift(ctx: Context) -> Iterator[Observation]:
    """TTFT p95 against the engine's own first hour: baselines are kept per engine run."""
    rules = ctx.rules
    at = ctx.cycle.taken_at
    for engine, reading in ctx.ready_engines():
        if engine.ready_at is None:
            continue
        # A run is a process: a soft restart keeps the baseline, so its cure is judged against the same one.
        run = f"{engine.running_generation}:{engine.process_started_at or engine.ready_at.timestamp()}"
        baseline = ctx.baselines.get(engine.pk)
        source = ctx.source(f"engine{engine.pk}", DRIFT)
        if baseline is None or baseline.run != run:
            if baseline is not None:
                yield Observation(DRIFT, source, Outcome.GONE, None, title="",
                                  detail=f"engine {engine.name} restarted; its TTFT baseline starts again")
            baseline = ctx.baselines[engine.pk] = Baseline(run=run)
        p95 = reading.ttft_p95 if reading else None
        if baseline.value is None:
            _collect(baseline, p95, (at - engine.ready_at).total_seconds() / 60, rules.drift_baseline_minutes)
            continue
        if p95 is None:
            continue
        ratio = p95 / baseline.value if baseline.value else float("inf")
        yield Observation(
            DRIFT, source, Outcome.TRUE if ratio > rules.drift_factor else Outcome.CLEAR, p95,
            title=f"First token slowing down on engine {engine.name}",
            detail=f"time to first token p95 {p95:.2f} s on engine {engine.name}, {ratio:.1f}× its first-hour "
                   f"baseline of {baseline.value:.2f} s; a restart usually brings it back",
            engine=engine, restart=rules.drift_restart, remedy=drift_condition(baseline.value, rules.drift_factor),
            for_seconds=rules.drift_seconds)


def _collect(baseline: Baseline, p95: float | None, minutes_up: float, window_minutes: int) -> None:
    if p95 is not None and len(baseline.values) < BASELINE_MAX_SAMPLES:
        baseline.values.append(p95)
    # An engine idle through its first hour gets its baseline from its first traffic instead.
    if minutes_up >= window_minutes and len(baseline.values) >= BASELINE_MIN_SAMPLES:
        baseline.value, baseline.values = statistics.median(baseline.values), []


def metrics_missing(ctx: Context) -> Iterator[Observation]:
    for engine, reading in ctx.ready_engines():
        if reading is None:
            continue
        error = reading.metrics_error
        yield Observation(
            METRICS, ctx.source(f"engine{engine.pk}", METRICS), Outcome.TRUE if error else Outcome.CLEAR, None,
            title=f"No metrics from engine {engine.name}",
            detail=(f"engine {engine.name} is ready but its /metrics gave nothing: {error}" if error
                    else f"metrics of engine {engine.name} arrive again"),
            engine=engine, min_cycles=ctx.rules.metrics_missing_cycles)


def nvml_failing(ctx: Context) -> Iterator[Observation]:
    status = ctx.cycle.gpu_status
    failing = status not in ("", "no GPU")  # a machine without GPUs is not a failure
    yield Observation(
        NVML, ctx.source("host", NVML), Outcome.TRUE if failing else Outcome.CLEAR, None,
        title=f"GPU readings failing on {ctx.host}",
        detail=f"NVML fails on {ctx.host}: {status}; GPU rules are blind" if failing
        else f"NVML answers again on {ctx.host}",
        min_cycles=ctx.rules.nvml_cycles)


def gpu_health(ctx: Context) -> Iterator[Observation]:
    """One observation per GPU, health state and signal (Xid, ECC, remap, ...), each finding's action in its
    message; a failing GPU's engine is drained and stopped, an application fault restarts the engine."""
    rules = ctx.rules
    for health in ctx.cycle.gpu_health:
        engine = ctx.engine_on_gpu(health.index)
        subject, seen = f"gpu{health.index}", set()
        groups: dict[tuple[Rule, str], list] = {}
        for finding in health.findings:
            rule = GPU_FAILING if finding.state == "failing" else GPU_DEGRADED
            groups.setdefault((rule, finding.signal), []).append(finding)
        for (rule, signal), findings in groups.items():
            source = ctx.source(subject, rule, signal)
            seen.add(source)
            on = f" (engine {engine.name})" if engine else ""
            # A failing GPU's engine is stopped, not restarted onto the same GPU.
            restart = (rules.gpu_xid_restart and engine is not None and health.state != "failing"
                       and any(f.kind == "restart-engine" for f in findings))
            yield Observation(
                rule, source, Outcome.TRUE, None,
                title=f"GPU {health.index} {rule.name.removeprefix('gpu-')}: {findings[0].detail}"[:200],
                detail="; ".join(f"GPU {health.index}{on}: {f.detail}. Action: {f.action}" for f in findings),
                engine=engine, restart=restart,
                stop=rule is GPU_FAILING and rules.gpu_health_stop and engine is not None,
                for_seconds=rules.gpu_throttle_seconds if signal == "clocks" else 0,
                # A GPU that stops answering is judged like NVML failing as a whole: over a few cycles.
                min_cycles=rules.nvml_cycles if signal == "nvml" else 1)
        prefix = make_source(ctx.host, subject, "")
        for source in sorted(ctx.known_sources - seen):
            # This GPU was judged this cycle and the finding is gone.
            if source.startswith(prefix) and parse_source(source)[0] in (GPU_FAILING.name, GPU_DEGRADED.name):
                yield Observation(RULES[parse_source(source)[0]], source, Outcome.CLEAR, None, title="",
                                  detail=f"GPU {health.index}: {source.rsplit(':', 1)[1]} is fine again")


CHECKS = [gpu_memory, kv_cache, foreign_processes, imbalance, stuck, ttft, drift, metrics_missing, nvml_failing,
          gpu_health]


def observe(ctx: Context) -> Iterator[Observation]:
    for check in CHECKS:
        for observation in check(ctx):
            if getattr(ctx.rules, observation.rule.enabled_field):
                yield observation
