"""The remedy ladder of the rules that restart an engine for what a restart cures (GPU memory grown past what the
engine reserved; time to first token drifting from its baseline, where that rule is set to act): reset the
prefix cache, then restart in place (soft), then restart in full, each step only if
the condition is still there REMEDY_SETTLE_SECONDS after the previous one. Every step goes into the incident's
events with its duration and whether it cured the condition. The stuck-engine rule, application faults and
crashes go straight to the full restart (rules/actions.restart, the supervisor): sleep mode cures none of them.

The ladder runs in the engine's host queue (monitoring.tasks.remedy_engine), never in the alerting lane: one task
per step, the next queued with a countdown instead of sleeping in a worker. Its plan is a plain dict (the task's
argument) so a worker restart loses at most the step under way (acks late: it runs again).

Also here: the engine's GPU memory when it first became ready after a start (its baseline, recorded by the rules
on the first cycle after that, kept with their state), and after each soft restart whether the memory went back to
it ("GPU memory back to 118.2 GiB of the 118.0 GiB baseline").
"""

import logging
import time
from dataclasses import dataclass

from django.conf import settings

from glmadmin import jobs
from glmadmin.lib import deadline, nvml
from glmadmin.schedules import host_queue
from inference import engine_client
from inference import remedy as steps
from inference.models import Engine, EngineState

from ..models.telemetry_rules import RESERVATION_MARGIN
from . import engine_metrics
from .process_table import EngineProcess, ProcessTable
from .rules.state import memory_baseline

log = logging.getLogger(__name__)

GIB = 1024**3
NVML_KEY, NVML_SECONDS = "nvml-read", 5.0  # the sampler's key: a hung NVML is waited on once, not per caller
POLL_FULL = 5  # seconds between looks at a full restart under way
RECHECKS = 3  # re-reads that could not judge the condition before the ladder gives up
BASELINE_WINDOW = 600  # seconds after becoming ready within which the post-start baseline may still be taken
READY_AFTER_START = "ready;"  # how the supervisor's reason begins when a started engine becomes ready


# --- the engine's GPU memory now ---------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuNow:
    index: int
    used: int  # the whole GPU
    total: int
    own: int | None  # the engine's processes together; None when NVML does not say
    seen: bool = True  # False: none of the engine's processes holds memory on it


def read_engine_gpus(engine: Engine) -> tuple[dict[int, GpuNow], str]:
    """The engine's GPUs as NVML reports them now, with what its own processes hold; or ({}, why not)."""
    try:
        snapshot = deadline.run(NVML_KEY, nvml.read, seconds=NVML_SECONDS, what="NVML read")
    except (nvml.NvmlError, deadline.Stalled) as exc:
        return {}, str(exc)
    if snapshot.status:
        return {}, snapshot.status
    table = ProcessTable([EngineProcess(engine.pk, engine.pid, engine.process_started_at)] if engine.pid else [])
    gpus = {}
    try:
        for gpu in snapshot.gpus:
            if gpu.index not in engine.gpus:
                continue
            own = [p.used_bytes for p in gpu.processes if table.engine_of(p.pid) == engine.pk]
            gpus[gpu.index] = GpuNow(gpu.index, gpu.memory_used, gpu.memory_total,
                                     None if None in own else sum(own), bool(own))
    except deadline.Stalled as exc:  # /proc of a process stuck in the kernel (a "check stalled" incident)
        return {}, str(exc)
    missing = [i for i in engine.gpus if i not in gpus]
    if missing:
        return {}, f"GPU(s) {', '.join(map(str, missing))} not seen by NVML"
    return gpus, ""


# --- the post-start baseline, and the check after a soft restart ------------------------------------------

def note_baselines(engines, cycle, memory: dict[int, dict]) -> None:
    """Record the GPU memory of each engine that became ready after a start since the last cycle (rules state)."""
    if cycle.gpu_status:
        return
    gpus = {g.index: g for g in cycle.gpus}
    for engine in engines:
        if (engine.state != EngineState.READY or not engine.pid or not engine.gpus or engine.ready_at is None
                or not engine.state_reason.startswith(READY_AFTER_START)):
            continue  # not ready after a start (a soft restart is checked against the start's baseline)
        process = _process(engine)
        if memory.get(engine.pk, {}).get("process") == process:
            continue
        if (cycle.taken_at - engine.ready_at).total_seconds() > BASELINE_WINDOW:
            continue  # seen only long after it became ready (adopted, or the state was lost): it may have grown
        held = {}
        for index in engine.gpus:
            gpu = gpus.get(index)
            own = [p.used_bytes for p in gpu.processes if p.engine_id == engine.pk] if gpu else []
            if not own or None in own:
                break
            held[str(index)] = sum(own)
        else:
            memory[engine.pk] = {"process": process, "gpus": held, "at": cycle.taken_at.timestamp()}
            log.info("engine %s: post-start GPU memory %s", engine.name, _gib_list(held))


def _process(engine: Engine) -> str:
    return f"{engine.pid}:{engine.process_started_at}"


def memory_after_soft_restart(sender=None, engine: Engine = None, outcome=None, **kwargs) -> str:
    """Whether a soft restart brought the engine's GPU memory back to its post-start baseline, in words
    (connected to inference.soft_restart.restarted_in_place by monitoring.apps)."""
    if not engine.gpus:
        return ""
    gpus, error = read_engine_gpus(engine)
    if error:
        return f"GPU memory after the soft restart not read: {error}"
    if any(g.own is None or not g.seen for g in gpus.values()):
        return ("GPU memory after the soft restart not known: NVML shows no memory of the engine's processes, or "
                "does not say how much")
    return compare_with_baseline(engine, gpus, memory_baseline(engine.host, engine.pk))


def compare_with_baseline(engine: Engine, gpus: dict[int, GpuNow], baseline: dict | None) -> str:
    now = {str(i): g.own for i, g in gpus.items()}
    if baseline is None or baseline.get("process") != _process(engine):
        return (f"GPU memory after the soft restart {_gib_list(now)}; no post-start baseline to compare with (it is "
                "taken on the first sampling cycle after the engine becomes ready after a start)")
    base = baseline["gpus"]
    off = {i: g for i, g in gpus.items()
           if str(i) not in base or abs(g.own - base[str(i)]) > RESERVATION_MARGIN * g.total}
    if len(gpus) == 1:
        (index, gpu), = gpus.items()
        if off:
            return (f"GPU memory not back to its post-start baseline: {gpu.own / GIB:.1f} GiB against the "
                    f"{base.get(str(index), 0) / GIB:.1f} GiB baseline (GPU {index})")
        return f"GPU memory back to {gpu.own / GIB:.1f} GiB of the {base[str(index)] / GIB:.1f} GiB baseline"
    pairs = ", ".join(f"GPU {i} {g.own / GIB:.1f} of {base.get(str(i), 0) / GIB:.1f} GiB" for i, g in gpus.items())
    if off:
        return f"GPU memory not back to its post-start baseline on GPU {', '.join(map(str, off))}: {pairs}"
    return f"GPU memory back to its post-start baseline: {pairs}"


def _gib_list(held: dict[str, int]) -> str:
    return ", ".join(f"{value / GIB:.1f} GiB on GPU {index}" for index, value in held.items())


# --- conditions: read again after each step ------------------------------------------------------------------

def gpu_memory_condition(gpu: int, percent: float) -> dict:
    """The GPU-memory rule's condition, as the plan carries it."""
    return {"kind": "gpu-memory", "gpu": gpu, "percent": percent}


def drift_condition(baseline: float, factor: float) -> dict:
    """The TTFT-drift rule's condition: p95 above factor x the run's baseline, over the window after a step."""
    return {"kind": "ttft-drift", "baseline": baseline, "factor": factor, "since": None}


def start_window(engine: Engine, condition: dict) -> None:
    """Where the re-read's window begins (right after a step): a TTFT p95 is of the requests after it."""
    if condition["kind"] == "ttft-drift":
        scrape = _scrape(engine)
        condition["since"] = scrape.as_json() if isinstance(scrape, engine_metrics.Scrape) else None


def _scrape(engine: Engine) -> "engine_metrics.Scrape | str":
    try:
        text = engine_client.metrics_text(engine, timeout=settings.TELEMETRY_SCRAPE_TIMEOUT)
        return engine_metrics.parse(text, time.time())
    except (engine_client.HTTPError, ValueError, KeyError) as exc:
        return f"/metrics: {type(exc).__name__}: {exc}"[:200]


def read_condition(engine: Engine, condition: dict) -> tuple[bool | None, str]:
    """(still there?, the reading in words); None when it cannot be judged now."""
    if condition["kind"] == "ttft-drift":
        return _read_drift(engine, condition)
    if condition["kind"] != "gpu-memory":
        return None, f"unknown condition {condition['kind']!r}"
    gpus, error = read_engine_gpus(engine)
    if error:
        return None, f"GPU memory not read: {error}"
    gpu = gpus[condition["gpu"]] if condition["gpu"] in gpus else None
    if gpu is None:
        return None, f"GPU {condition['gpu']} is not the engine's any more"
    percent = 100 * gpu.used / gpu.total
    reserved = engine.reservation() * gpu.total
    if gpu.own is None or not gpu.seen:
        what = "does not say what the engine holds" if gpu.seen else "shows none of the engine's processes"
        return None, f"GPU {gpu.index} memory at {percent:.1f} %; NVML {what}"
    grown = gpu.own > reserved + RESERVATION_MARGIN * gpu.total
    above = percent > condition["percent"]
    detail = (f"GPU {gpu.index} memory at {percent:.1f} % (threshold {condition['percent']:g} %), engine "
              f"{engine.name} holds {gpu.own / GIB:.1f} GiB, {'more than' if grown else 'within'} its "
              f"{reserved / GIB:.1f} GiB reservation")
    return above and grown, detail


def _read_drift(engine: Engine, condition: dict) -> tuple[bool | None, str]:
    now = _scrape(engine)
    if not isinstance(now, engine_metrics.Scrape):
        return None, now
    if condition["since"] is None:
        condition["since"] = now.as_json()  # the window starts at the first answer
        return None, "no window yet: the engine's /metrics did not answer right after the step"
    since = engine_metrics.Scrape.from_json(condition["since"])
    p95 = engine_metrics.window(since, now).ttft_p95
    if p95 is None:
        return None, f"no request got its first token in the {now.at - since.at:.0f} s since the step"
    limit = condition["baseline"] * condition["factor"]
    return p95 > limit, (f"time to first token p95 {p95:.2f} s on engine {engine.name} over {now.at - since.at:.0f} "
                         f"s, {p95 / condition['baseline']:.1f}× its baseline of {condition['baseline']:.2f} s "
                         f"(limit {condition['factor']:g}×)")


# --- the ladder ------------------------------------------------------------------------------------------------

def plan(engine: Engine, source: str, condition: dict, reason: str) -> tuple[dict, str]:
    """The ladder for `engine` and what it will do, in words for the incident's message."""
    ladder, why_not = steps.ladder(engine)
    said = ("remedy: " + " -> ".join(steps.NAMES[s] for s in ladder) +
            ", each step only while the condition lasts" if len(ladder) > 1
            else f"remedy: full restart ({why_not})")
    return {"engine": engine.pk, "source": source, "condition": condition, "reason": reason[:300],
            "steps": ladder, "at": 0, "phase": "step", "since": None, "generation": 0, "seconds": 0.0,
            "rechecks": 0, "note": ""}, said


def begin(plan: dict) -> None:
    """Start the ladder in the engine's host queue (after its incident exists: each step is recorded there)."""
    engine = Engine.objects.get(pk=plan["engine"])
    try:
        jobs.enqueue("monitoring.tasks.remedy_engine", plan, queue=host_queue(engine.host))
    except Exception as exc:  # noqa: BLE001 - the rules' cycle goes on; the incident says the ladder did not start
        log.exception("remedy for engine %s not queued", engine.name)
        _record(engine, plan, f"remedy not started: the task could not be queued ({type(exc).__name__}: {exc})"[:300])


def run(plan: dict) -> str:
    """One run of the ladder's task: the next step, and the run after it queued with its countdown."""
    try:
        following, delay = advance(plan)
    except Exception as exc:  # noqa: BLE001 - the incident says the ladder stopped, and why
        log.exception("remedy for engine %s stopped", plan["engine"])
        engine = Engine.objects.filter(pk=plan["engine"]).first()
        if engine is not None:
            _record(engine, plan, f"remedy stopped by an error: {type(exc).__name__}: {exc}"[:300])
        return "remedy stopped by an error"
    if following is None:
        return "remedy over"
    jobs.enqueue("monitoring.tasks.remedy_engine", following, queue=host_queue(settings.GLMADMIN_HOST_NAME),
                 countdown=delay)
    return f"remedy: next {following['phase']} in {delay:g} s"


def advance(plan: dict) -> tuple[dict | None, float]:
    """Take the plan's next step or re-read its condition; returns (the plan to carry on with, in how many
    seconds), or (None, 0) once it is over. Steps that need no wait follow each other in the same call."""
    while plan is not None:
        engine = Engine.objects.filter(pk=plan["engine"]).first()
        if engine is None:
            return None, 0
        plan, delay = {"step": _step, "full": _await_full, "check": _check}[plan["phase"]](engine, dict(plan))
        if plan is None or delay:
            return plan, delay
    return None, 0


def _step(engine: Engine, plan: dict) -> tuple[dict | None, float]:
    step = plan["steps"][plan["at"]]
    if not engine.enabled:  # an operator stopped it during the settle time: no step may start it again
        _record(engine, plan, f"{steps.NAMES[step]} not taken: the engine was stopped")
        return None, 0
    if step != steps.FULL and engine.state != EngineState.READY:
        _record(engine, plan, f"{steps.NAMES[step]} not taken: the engine is {engine.get_state_display().lower()}")
        return None, 0
    taken = steps.take(engine, step, plan["reason"])
    plan["seconds"], plan["note"] = taken.seconds, taken.note
    if taken.memory:
        plan["note"] += f"; {taken.memory}"
    if taken.step == steps.FULL:  # asked for, or a soft restart that fell back to it
        if not taken.done:
            _record(engine, plan, f"{_step_label(plan, step)}: {taken.note} (after {taken.seconds:.1f} s)")
        if not taken.generation:  # not even asked for: the engine was stopped meanwhile
            return None, 0
        plan.update(at=plan["steps"].index(steps.FULL), phase="full", since=time.time(),
                    generation=taken.generation)
        return plan, POLL_FULL
    plan.update(phase="check", rechecks=0)
    start_window(engine, plan["condition"])
    return plan, settings.REMEDY_SETTLE_SECONDS


def _await_full(engine: Engine, plan: dict) -> tuple[dict | None, float]:
    finished, failed = steps.full_restart_done(engine, plan["generation"])
    if failed:
        _record(engine, plan, f"full restart not finished: {failed}")
        return None, 0
    if not finished:
        if time.time() - plan["since"] > engine.shutdown_timeout + engine.startup_timeout + 120:
            _record(engine, plan, f"full restart not finished after {time.time() - plan['since']:.0f} s "
                                  f"(engine {engine.get_state_display().lower()}: {engine.state_reason})")
            return None, 0
        return plan, POLL_FULL
    # Up to the engine's own "ready" (the poll sees it up to POLL_FULL later).
    seconds = (engine.ready_at.timestamp() if engine.ready_at else time.time()) - plan["since"]
    plan.update(phase="check", rechecks=0, seconds=seconds, note=f"full restart in {seconds:.1f} s")
    start_window(engine, plan["condition"])
    return plan, settings.REMEDY_SETTLE_SECONDS


def _check(engine: Engine, plan: dict) -> tuple[dict | None, float]:
    step = plan["steps"][plan["at"]]
    present, reading = read_condition(engine, plan["condition"])
    if present is None:
        plan["rechecks"] += 1
        if plan["rechecks"] < RECHECKS:
            return plan, settings.REMEDY_SETTLE_SECONDS
        _record(engine, plan, f"{_step_label(plan, step)}: {plan['note']}; not judged: {reading}; "
                              "no further step")
        return None, 0
    last = plan["at"] + 1 >= len(plan["steps"])
    verdict = ("not cured" if present else "cured") + ("" if not present or not last else "; no step left")
    _record(engine, plan, f"{_step_label(plan, step)}: {plan['note']}; {verdict}: {reading}")
    if not present or last:
        return None, 0
    plan.update(at=plan["at"] + 1, phase="step")
    return plan, 0


def _step_label(plan: dict, step: str) -> str:
    return f"step {plan['at'] + 1} of {len(plan['steps'])}, {steps.NAMES[step]}"


def _record(engine: Engine, plan: dict, note: str) -> None:
    steps.record(engine, plan["source"], note)
