"""Reconcile engines: make what runs match what the database says should run.

One step per call, never a long wait: start a process, check a loading one,
probe a ready one, advance a stop. The beat task calls it every few seconds
and `manage.py restart_engine` calls it in a loop while it waits; a per-engine
lock keeps two callers from stepping the same engine at once, and every state
change is a conditional UPDATE on the state that was read, so a change is
made (and recorded) once even if the lock was lost. Running it twice, or after
the caller crashed, never starts a second process: a live process is found
again by pid + create time, and the port is checked before any start.
"""

import logging
import os
from datetime import timedelta
from pathlib import Path

import psutil
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from glmadmin import live
from glmadmin.lib import processes, runas
from glmadmin.lib.redis import single_flight

from . import engine_client, engine_incidents, gpu_occupancy, options
from .gateway import routing as gateway_routing
from .models import Engine, EngineEvent
from .models import EngineState as S

log = logging.getLogger(__name__)

# Stopping: routers read engine states with some delay, so a draining engine keeps serving
# at least DRAIN_MIN; SIGTERM follows once nothing was in flight for QUIET seconds.
DRAIN_MIN = 1
QUIET = 1
# After SIGTERM of a drained engine, vLLM's own teardown waits 3-5 s on its workers. With
# nothing in flight for SETTLE more seconds, killing the group loses nothing (we remove its
# shared memory), so a restart does not pay for that wait; TERMINATE_GRACE bounds it anyway.
SETTLE = 0.5
TERMINATE_GRACE = 5
# One engine's step is single-flight across workers; a worker killed mid-step holds it until it expires, so it
# must outlast the longest step (a drain waits at most the engine's shutdown_timeout).
STEP_LOCK_SECONDS = 120
VLLM_MARKER = "vllm.entrypoints.openai.api_server"
BUSY = "busy: "  # in a ready engine's reason: a probe failed while tokens were flowing


def reconcile_host(host: str | None = None) -> None:
    for engine_id in Engine.objects.filter(host=host or settings.GLMADMIN_HOST_NAME).values_list("pk", flat=True):
        reconcile(engine_id)


def reconcile(engine_id: int) -> bool:
    """One step for one engine; False if another caller holds it right now."""
    with single_flight(f"engine:{engine_id}", ttl_seconds=STEP_LOCK_SECONDS) as acquired:
        if not acquired:
            return False
        engine = Engine.objects.filter(pk=engine_id).first()
        if engine is not None:
            _step(engine)
        return True


def _step(engine: Engine) -> None:
    proc = processes.find(engine.pid, engine.process_started_at)
    if engine.state == S.DRAINING:
        _continue_stop(engine, proc)
        return
    if engine.state == S.SOFT_RESTART and proc is not None:
        # Its caller holds the engine's lock for the whole soft restart: holding it now, we know the caller
        # died half-way (asleep, maybe). The full restart makes sure the engine serves again.
        restart_now(engine, "soft restart abandoned half-way; full restart")
        return
    if not engine.enabled or engine.state == S.FAILED:
        if proc is not None:
            begin_stop(engine, "disabled" if not engine.enabled else "failed")
        elif engine.state not in (S.STOPPED, S.FAILED) or engine.state_reason.startswith(gpu_occupancy.WAITING):
            if transition(engine, S.STOPPED, "disabled", pid=None):
                gpu_occupancy.resolve_incident(engine, "disabled while it waited for its GPUs")
        return
    if proc is None:
        if engine.state in (S.STARTING, S.READY, S.UNHEALTHY, S.SOFT_RESTART):
            _crashed(engine, f"process {engine.pid} exited")
        elif engine.state == S.STOPPED or (engine.state == S.BACKOFF and timezone.now() >= engine.backoff_until):
            _start(engine)
        return
    if engine.running_generation < engine.restart_generation:
        begin_stop(engine, "restart requested")
    elif engine.state == S.STARTING:
        _check_startup(engine)
    elif engine.state == S.READY:
        _probe(engine)
    elif engine.state == S.UNHEALTHY:
        # Requests may still be in flight on an engine that stopped answering probes: a short drain.
        begin_stop(engine, engine.state_reason or "unhealthy", drain_seconds=settings.ENGINE_LIVENESS_DRAIN_SECONDS)
    else:  # alive while recorded as stopped/back-off: a start we lost track of; let the probes judge it
        transition(engine, S.STARTING, "found running")


# --- state changes -------------------------------------------------------------

def record(engine: Engine, reason: str) -> None:
    """An event that changes no state (e.g. why a soft restart became a full one), in the engine's history."""
    EngineEvent.objects.create(engine=engine, at=timezone.now(), state=engine.state, previous=engine.state,
                               reason=reason[:300], pid=engine.pid)
    log.info("engine %s: %s", engine.name, reason)


def transition(engine: Engine, state: str, reason: str, **fields) -> bool:
    """Move engine from the state it was read in to `state`; False if someone else moved it first."""
    now = timezone.now()
    with transaction.atomic():
        changed = Engine.objects.filter(pk=engine.pk, state=engine.state, pid=engine.pid).update(
            state=state, state_reason=reason[:300], state_changed_at=now, **fields)
        if not changed:
            return False
        EngineEvent.objects.create(engine=engine, at=now, state=state, previous=engine.state, reason=reason[:300],
                                   pid=fields.get("pid", engine.pid))
    previous = engine.state
    for name, value in {"state": state, "state_reason": reason, "state_changed_at": now, **fields}.items():
        setattr(engine, name, value)
    log.info("engine %s: %s -> %s (%s)", engine.name, previous, state, reason)
    # After the commit, robust: neither Redis nor a page template can undo or stop a state change (the
    # caller's next step, such as opening the failure incident, still runs); the next publish corrects them.
    transaction.on_commit(gateway_routing.publish, robust=True)  # first: the gateway stops routing now
    live.publish_on_commit()
    return True


def _start(engine: Engine) -> None:
    holder = processes.port_holder(engine.port) or _not_yet_listening(engine)
    if holder is not None:
        if _is_ours(holder, engine):
            # Ours from an earlier start whose record was lost: adopt it rather than start a second one.
            transition(engine, S.STARTING, f"adopted running process {holder.pid}", pid=holder.pid,
                        process_started_at=holder.create_time(), running_generation=engine.restart_generation,
                        running_config=engine.launch_config())
            return
        _crashed(engine, f"port {engine.port} is in use by pid {holder.pid} ({holder.name()})")
        return
    if _waits_for_gpus(engine):
        return
    argv = options.command(engine, settings.ENGINE_PYTHON)
    env = options.environment(engine, options.base_environment(os.environ))
    log_path = log_file(engine)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cwd, run_as = log_path.parent, None
    if settings.ENGINE_USER:
        try:
            cwd, run_as = _as_engine_user(engine, env)
        except PermissionError as exc:
            _crashed(engine, str(exc))
            return
    with open(log_path, "a") as fh:
        user = f" as {settings.ENGINE_USER}" if run_as else ""
        fh.write(f"\n=== glmadmin {timezone.now():%Y-%m-%d %H:%M:%S} starting{user}: {' '.join(argv)}\n")
    try:
        proc = processes.spawn(argv, env, log_path, cwd=cwd, run_as=run_as)
    except OSError as exc:
        _crashed(engine, f"cannot start {argv[0]}: {exc.strerror or exc}")
        return
    if not transition(engine, S.STARTING, f"started pid {proc.pid}", pid=proc.pid,
                       process_started_at=proc.create_time(), running_generation=engine.restart_generation,
                       running_config=engine.launch_config(), probe_failures=0, ready_at=None, stop_deadline=None,
                       restarts=engine.restarts + (1 if engine.process_started_at else 0)):
        # Lost the claim after spawning (the lock expired under us): never leave a second process behind.
        processes.kill_group(proc.pid)
        return
    gpu_occupancy.resolve_incident(engine, f"its GPUs are free; started pid {proc.pid}")


def _as_engine_user(engine: Engine, env: dict) -> tuple:
    """(cwd, (uid, gid)) of an engine that runs as GLMADMIN_ENGINE_USER; env gets its name and home. The data
    directory is closed to it (0700) before each start, and the log in it stays written by glmadmin's writer."""
    account = runas.lookup(settings.ENGINE_USER)
    model = Path(engine.model)  # a local model (not a hub id) must be readable by it: say so rather than crash
    if model.is_absolute() and model.is_dir():
        if closed := runas.closed_to(account, model) or runas.unreadable(account, model):
            raise PermissionError(f"cannot start as {account.name}: {closed} is closed to it (model {model})")
    runas.keep_private(settings.DATA_DIR)
    home = runas.home(settings.ENGINE_HOME_DIR / engine.name, account)
    env.update(runas.environment(account, home))
    return home, (account.uid, account.gid)


def _waits_for_gpus(engine: Engine) -> bool:
    """True (the engine stays as it is, with the reason and an incident) while another process holds one of
    its GPUs: a start now would crash into back-off once vLLM found the memory taken."""
    held = gpu_occupancy.holders(engine.gpus, settings.ENGINE_FOREIGN_GIB)
    if not held:
        return False
    reason = gpu_occupancy.waiting_reason(held)
    if engine.state_reason != reason[:300]:  # once per change, not an event every step
        with transaction.atomic():
            if transition(engine, engine.state, reason):
                gpu_occupancy.open_incident(engine, reason)
    return True


def _not_yet_listening(engine: Engine):
    """An engine process for this port that does not listen yet. vLLM binds its port only after its imports
    (10-20 s on a busy machine): a start whose record was lost (its supervisor died right after spawning) is
    not on the port yet, and a second start then would race it for the port and the GPUs."""
    # The engine leads a session of its own; a process forked from it (its log writer, before it re-executes
    # itself under a name of its own) does not.
    leaders = [p for p in processes.with_arguments(VLLM_MARKER, str(engine.port)) if processes.leads_group(p.pid)]
    return leaders[0] if leaders else None


def _is_ours(proc, engine: Engine) -> bool:
    """Whether proc is this engine's, started by glmadmin: vLLM's command line with the engine's port, in a
    process group that also holds glmadmin's log writer for this engine's log, running as glmadmin's own user.
    The command line alone can be anyone's: another local user's process that names the port would otherwise
    be adopted, and the gateway would send it users' prompts. The writer is what no other user can start."""
    try:
        cmdline = proc.cmdline()
        group = os.getpgid(proc.pid)
    except (psutil.Error, OSError):  # a process that vanished is not ours
        return False
    return (VLLM_MARKER in cmdline and str(engine.port) in cmdline
            and processes.writes_log(group, log_file(engine)))


def _check_startup(engine: Engine) -> None:
    if engine_client.health(engine):
        probe = engine_client.generate_one_token(engine)
        if probe.ok:
            _became_ready(engine, probe)
            return
    budget = engine.startup_timeout
    if engine.state_changed_at and timezone.now() - engine.state_changed_at > timedelta(seconds=budget):
        processes.kill_group(engine.pid)
        _crashed(engine, f"not ready within its startup budget of {budget} s")


def _became_ready(engine: Engine, probe: engine_client.Probe) -> None:
    now = timezone.now()
    with transaction.atomic():
        if transition(engine, S.READY, f"ready; one-token probe {probe.latency_ms:.0f} ms", ready_at=now,
                       last_probe_at=now, last_probe_ms=probe.latency_ms, probe_failures=0, backoff_until=None,
                       shm_segments=processes.shared_memory(engine.pid)):
            engine_incidents.resolve(engine)


def _probe(engine: Engine) -> None:
    now = timezone.now()
    if engine.last_probe_at and now - engine.last_probe_at < timedelta(seconds=settings.ENGINE_PROBE_INTERVAL):
        return
    probe = engine_client.generate_one_token(engine)
    busy = "" if probe.ok else engine_client.busy(engine)
    if probe.ok:
        engine_client.probe_answered(engine)
    failures = 0 if probe.ok or busy else engine.probe_failures + 1
    fields = {}
    if busy:
        # Tokens flow: the engine serves, only too loaded to answer the probe in time. Not a failure, and the
        # streak starts again; the reason says so (still "ready;" first, as a ready engine's reason begins).
        fields["state_reason"] = f"ready; {BUSY}probe failed ({probe.error[:80]}) while {busy}"
    elif probe.ok and BUSY in engine.state_reason:
        fields["state_reason"] = f"ready; one-token probe {probe.latency_ms:.0f} ms"
    fields = {k: v[:300] for k, v in fields.items() if v[:300] != engine.state_reason}
    Engine.objects.filter(pk=engine.pk, state=S.READY).update(
        last_probe_at=now, last_probe_ms=probe.latency_ms if probe.ok else None, probe_failures=failures, **fields)
    engine.probe_failures, engine.last_probe_at = failures, now
    if fields:
        engine.state_reason = fields["state_reason"]
        live.publish_on_commit()
    if failures >= settings.ENGINE_LIVENESS_THRESHOLD:
        transition(engine, S.UNHEALTHY, f"{failures} failed probes in a row; last: {probe.error}")


def _crashed(engine: Engine, reason: str) -> None:
    if engine.pid:
        processes.kill_group(engine.pid)  # what is left of it (vLLM workers) must not hold the port or GPU
    processes.remove_shared_memory(engine.shm_segments)
    now = timezone.now()
    window = timedelta(seconds=settings.ENGINE_FAILURE_WINDOW_SECONDS)
    recent = [t for t in engine.recent_failures if now - timezone.datetime.fromisoformat(t) < window]
    recent.append(now.isoformat())
    if len(recent) >= settings.ENGINE_MAX_QUICK_FAILURES:
        reason = f"{len(recent)} failures within {window.seconds // 60} min; last: {reason}"
        # One transaction: the pages are told once both are committed, so the banner shows the incident.
        with transaction.atomic():
            if transition(engine, S.FAILED, reason, pid=None, recent_failures=recent, backoff_until=None,
                           shm_segments=[]):
                engine_incidents.open_failed(engine, reason)
        return
    delay = settings.ENGINE_BACKOFF_SECONDS * 2 ** (len(recent) - 1)
    transition(engine, S.BACKOFF, f"{reason}; retrying in {delay} s", pid=None, recent_failures=recent,
                backoff_until=now + timedelta(seconds=delay), shm_segments=[])


def begin_stop(engine: Engine, reason: str, drain: bool = True, drain_seconds: int | None = None) -> None:
    """Stop routing to it (state draining); SIGTERM follows once in-flight requests are done.

    vLLM drains on SIGTERM too, but it also waits out its whole shutdown
    timeout in teardown; draining first and then terminating an idle server
    stops it in seconds, and a request is never cut.
    """
    drain_for = (engine.shutdown_timeout if drain_seconds is None else drain_seconds) if drain else 0
    transition(engine, S.DRAINING, reason, stop_deadline=timezone.now() + timedelta(seconds=drain_for),
                terminated_at=None, quiet_since=None)
    if not drain:
        _continue_stop(engine, processes.find(engine.pid, engine.process_started_at))


def restart_now(engine: Engine, reason: str) -> None:
    """A full restart without a drain: for an engine nothing is routed to any more (a soft restart that failed
    or was abandoned)."""
    Engine.objects.filter(pk=engine.pk).update(restart_generation=F("restart_generation") + 1)
    engine.refresh_from_db()
    begin_stop(engine, reason, drain=False)


def _continue_stop(engine: Engine, proc) -> None:
    pgid, now = engine.pid, timezone.now()
    if proc is None and (pgid is None or not processes.group_alive(pgid)):
        processes.remove_shared_memory(engine.shm_segments)
        transition(engine, S.STOPPED, "stopped", pid=None, stop_deadline=None, terminated_at=None, ready_at=None,
                    shm_segments=[])
        _step_after_stop(engine)
        return
    if engine.terminated_at is None:
        if now < engine.stop_deadline and not _drained(engine, proc, now):
            return
        processes.terminate(pgid)
        Engine.objects.filter(pk=engine.pk, state=S.DRAINING).update(terminated_at=now)
        engine.terminated_at = now
    else:
        waited = (now - engine.terminated_at).total_seconds()
        if waited >= TERMINATE_GRACE or (waited >= SETTLE and engine_client.in_flight(engine) == 0):
            processes.kill_group(pgid)  # SIGKILL reaches the whole group: no orphans


def _drained(engine: Engine, proc, now) -> bool:
    """Nothing in flight for QUIET seconds, and routers had DRAIN_MIN to see the draining state.

    The engine's counters drop to zero when the core finishes a request, a moment
    before its last chunks leave the HTTP server; the quiet period covers that.
    Both clocks run from the start of the drain, so an idle engine waits only DRAIN_MIN.
    """
    # The gateway's own count too: a stream it still relays is not over when the engine's counters say so.
    if proc is not None and (engine_client.in_flight(engine) or gateway_routing.in_flight(engine.name)):
        if engine.quiet_since:
            Engine.objects.filter(pk=engine.pk).update(quiet_since=None)
            engine.quiet_since = None
        return False
    if engine.quiet_since is None:
        Engine.objects.filter(pk=engine.pk).update(quiet_since=now)
        engine.quiet_since = now
    return (now - engine.state_changed_at >= timedelta(seconds=DRAIN_MIN)
            and now - engine.quiet_since >= timedelta(seconds=QUIET))


def _step_after_stop(engine: Engine) -> None:
    # A restart continues straight into the start, so it costs no extra reconcile interval.
    engine.refresh_from_db()
    if engine.enabled and engine.state == S.STOPPED and engine.running_generation < engine.restart_generation:
        _start(engine)


def log_file(engine: Engine):
    return settings.ENGINE_DIR / engine.name / "engine.log"
