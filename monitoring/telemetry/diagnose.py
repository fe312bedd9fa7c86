"""The memory diagnosis of one engine, on demand (`manage.py diagnose [ENGINE]`): the checks the field does by
hand when an engine runs out of GPU memory, each line a reading and a verdict, like a quick-check table of
symptom, likely cause and action.

1. its processes' GPU memory against what it reserved (gpu_memory_utilization), foreign processes on its GPUs
   and the balance across its tensor-parallel GPUs (NVML, now);
2. KV-cache usage, preemptions and the share of long prompts (the engine's own /metrics, since it started);
3. allocation failures and out-of-memory lines in its log.
"""

import re
from dataclasses import dataclass

from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from glmadmin.lib import nvml
from inference import engine_client, supervisor
from inference.models import Engine

from ..models import TelemetryRules
from ..models.telemetry_rules import RESERVATION_MARGIN
from .process_table import EngineProcess, ProcessTable

GIB = 1024**3
OK, LOOK = "ok", "look here"
LOG_TAIL_BYTES = 4 * 2**20  # the end of the log: a long-running engine's log is large
OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|out of memory|Failed to allocate|No available memory for the "
                 r"cache blocks|larger than the maximum number of tokens that can be stored in KV cache", re.I)
LONG_SHARE = 0.5  # a prompt over this share of max_model_len is a long-context request
BALANCE_POINTS = 10.0  # memory use of tensor-parallel GPUs more than this many percentage points apart


@dataclass(frozen=True)
class Line:
    check: str
    reading: str
    verdict: str  # "ok", "look here", or "act: what to do"


def act(what: str) -> str:
    return f"act: {what}"


def diagnose(engine: Engine) -> list[Line]:
    return [*_gpu_lines(engine), *_metrics_lines(engine), _log_line(engine)]


def _gpu_lines(engine: Engine) -> list[Line]:
    if not engine.gpus:
        return [Line("GPU memory", "no GPU given: the engine runs on the CPU", OK)]
    try:
        snapshot = nvml.read()
    except nvml.NvmlError as exc:
        return [Line("GPU memory", f"NVML fails: {exc}", act("see `manage.py gpu_status`; reset the GPU or "
                                                                "reboot the host if a GPU is lost"))]
    gpus = {g.index: g for g in snapshot.gpus}
    missing = [i for i in engine.gpus if i not in gpus]
    if snapshot.status or missing:
        return [Line("GPU memory", f"GPU(s) {', '.join(map(str, missing or engine.gpus))} not seen by NVML "
                     f"({snapshot.status or 'absent'})", act("check the engine's gpu_ids and the driver"))]
    engines = list(Engine.objects.filter(host=settings.GLMADMIN_HOST_NAME, pid__isnull=False))
    table = ProcessTable([EngineProcess(e.pk, e.pid, e.process_started_at) for e in engines])
    names = {e.pk: e.name for e in engines}
    mine = [gpus[i] for i in engine.gpus]
    return [*(_reservation(engine, g, table) for g in mine), *_foreign(engine, mine, table, names),
            _balance(engine, mine)]


def _reservation(engine: Engine, gpu, table: ProcessTable) -> Line:
    share = engine.reservation()
    own = [p.used_bytes for p in gpu.processes if table.engine_of(p.pid) == engine.pk]
    check = f"GPU {gpu.index}: engine memory vs reserved"
    reserved = f"reserved {100 * share:.0f} % = {share * gpu.memory_total / GIB:.1f} GiB"
    if not own:
        return Line(check, f"none of its processes holds memory ({reserved})",
                    LOOK if engine.pid else act("the engine is not running: start it"))
    if None in own:
        return Line(check, f"NVML does not say how much its processes hold ({reserved})", LOOK)
    held = sum(own)
    reading = f"{held / GIB:.1f} GiB held, {reserved}"
    if held > (share + RESERVATION_MARGIN) * gpu.memory_total:
        return Line(check, reading, act("it grew past its reservation (fragmentation or a leak): restart it"))
    return Line(check, reading, OK)


def _foreign(engine: Engine, gpus, table: ProcessTable, names: dict) -> list[Line]:
    limit = TelemetryRules.current().foreign_gib
    lines = []
    for gpu in gpus:
        others = [p for p in gpu.processes if table.engine_of(p.pid) != engine.pk]
        if not others:
            lines.append(Line(f"GPU {gpu.index}: other processes", "none", OK))
        for p in others:
            owner = table.engine_of(p.pid)
            who = f"pid {p.pid} ({table.name(p.pid) or '?'}, " + (
                "foreign)" if owner is None else f"engine {names.get(owner, owner)})")
            size = "an unknown amount" if p.used_bytes is None else f"{p.used_bytes / GIB:.1f} GiB"
            big = p.used_bytes is not None and p.used_bytes > limit * GIB
            verdict = (act(f"stop pid {p.pid} or move it to another GPU: the engine's next start needs that memory")
                       if big else LOOK)
            lines.append(Line(f"GPU {gpu.index}: other processes", f"{who} holds {size}", verdict))
    return lines


def _balance(engine: Engine, gpus) -> Line:
    if len(gpus) < 2:
        return Line("tensor-parallel balance", "one GPU: nothing to balance", OK)
    percents = {g.index: 100 * g.memory_used / g.memory_total if g.memory_total else 0.0 for g in gpus}
    spread = max(percents.values()) - min(percents.values())
    reading = ", ".join(f"GPU {i} {p:.0f} %" for i, p in percents.items()) + f" (spread {spread:.0f} points)"
    if spread > BALANCE_POINTS:
        return Line("tensor-parallel balance", reading,
                    act("something else holds memory on the fuller GPU (see above), or a worker died: restart "
                        "the engine"))
    return Line("tensor-parallel balance", reading, OK)


def _metrics_lines(engine: Engine) -> list[Line]:
    try:
        text = engine_client.metrics_text(engine, timeout=settings.TELEMETRY_SCRAPE_TIMEOUT)
    except (engine_client.HTTPError, ValueError) as exc:
        return [Line("KV cache and requests", f"/metrics did not answer: {type(exc).__name__}: {exc}"[:200],
                     LOOK if engine.pid else act("the engine is not running: start it"))]
    values, prompts = _values(text)
    lines = []
    kv = values.get("vllm:kv_cache_usage_perc")
    if kv is None:
        lines.append(Line("KV cache usage", "not reported", LOOK))
    else:
        high = 100 * kv > TelemetryRules.current().kv_cache_percent
        lines.append(Line("KV cache usage", f"{100 * kv:.0f} %", LOOK if high else OK))
    preemptions = values.get("vllm:num_preemptions_total")
    if preemptions is None:
        lines.append(Line("preemptions", "not reported", LOOK))
    else:
        lines.append(Line("preemptions", f"{preemptions:.0f} since the engine started",
                          act("the KV cache is too small for the load: lower max_num_seqs or max_model_len, or "
                              "raise gpu_memory_utilization") if preemptions else OK))
    lines.append(_long_prompts(engine, prompts))
    return lines


def _values(text: str) -> tuple[dict[str, float], dict[float, float]]:
    """Sums over labels of the families read, and the prompt-length histogram (le -> cumulative count)."""
    values: dict[str, float] = {}
    prompts: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vllm:request_prompt_tokens_bucket":
                le = float(sample.labels["le"])
                prompts[le] = prompts.get(le, 0) + sample.value
            elif sample.name in ("vllm:kv_cache_usage_perc", "vllm:num_preemptions_total"):
                values[sample.name] = values.get(sample.name, 0) + sample.value
    return values, prompts


def _long_prompts(engine: Engine, prompts: dict[float, float]) -> Line:
    check = "long-context requests"
    total = prompts.get(float("inf"))
    if not total:
        return Line(check, "no request yet" if prompts else "not reported", OK if prompts else LOOK)
    if not engine.max_model_len:
        return Line(check, f"{total:.0f} request(s); max_model_len not set, so nothing counts as long", OK)
    threshold = LONG_SHARE * engine.max_model_len
    # The histogram's bucket at or below the threshold: prompts above it are long (a lower bound of them).
    below = max((count for le, count in prompts.items() if le <= threshold), default=0)
    share = (total - below) / total
    reading = f"{100 * share:.0f} % of {total:.0f} request(s) over {threshold:.0f} prompt tokens"
    if share > 0.2:
        return Line(check, reading, act("long prompts fill the KV cache: cap the prompt length at the gateway "
                                        "or give this traffic an engine with more memory"))
    return Line(check, reading, LOOK if share > 0.05 else OK)


def _log_line(engine: Engine) -> Line:
    path = supervisor.log_file(engine)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - LOG_TAIL_BYTES))
            text = fh.read().decode(errors="replace")
    except FileNotFoundError:
        return Line("out-of-memory in the log", f"no log at {path}", OK)
    hits = [line.strip() for line in text.splitlines() if OOM.search(line)]
    if not hits:
        return Line("out-of-memory in the log", "none in the last 4 MiB", OK)
    return Line("out-of-memory in the log", f"{len(hits)} line(s), the last: {hits[-1][:160]}",
                act("an allocation failed: lower gpu_memory_utilization (others need memory) or max_model_len"))


def lines(engine: Engine) -> list[str]:
    rows = diagnose(engine)
    width = max(len(r.check) for r in rows)
    return [f"Memory diagnosis of engine {engine.name} ({engine.state})", "",
            *(f"{r.check:<{width}}  {r.verdict:<10}  {r.reading}" if not r.verdict.startswith("act")
              else f"{r.check:<{width}}  {r.verdict.split(':')[0]:<10}  {r.reading} -> {r.verdict[5:]}"
              for r in rows)]
