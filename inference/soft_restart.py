"""Soft restarts: an engine restarted in place through vLLM's sleep mode, in seconds instead of minutes.

Drain (the gateway stops routing to it, what is in flight finishes), POST /sleep?level=1 (vLLM frees the
weights and the KV cache from GPU memory), POST /wake_up (maps them back), a real one-token probe, ready.
On 2 x H200 with a GLM-4.7-Flash-architecture engine: sleep 2.6 s, wake 1.0 s, against 97 s for the full
restart. It cures what a restart cures in GPU memory (fragmentation, a grown cache), not a dead engine core,
CUDA errors or a leak in host memory: those go to the full restart, and so does every soft restart that fails.

Any step that fails or passes its deadline falls back to the full restart (stop, start), and so does an engine
that cannot sleep (soft restarts not allowed for it, started without sleep mode, vLLM's CPU build, which has
none); the reason is recorded in the engine's events.

The steps run in the caller (restart_engine --soft, or a task on the engine's host) while it holds the engine's
supervisor lock, so the supervisor does not step the engine meanwhile. A caller that dies mid-way leaves the
engine in SOFT_RESTART; once the lock expires the supervisor restarts it in full (supervisor._step).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from django.conf import settings
from django.db.models import F
from django.dispatch import Signal
from django.utils import timezone

from glmadmin.lib import processes
from glmadmin.lib.redis import single_flight

from . import control, engine_client, options, supervisor
from .gateway import routing as gateway_routing
from .models import Engine
from .models import EngineState as S

LOCK_WAIT = 30  # seconds to wait for the supervisor's current step on the engine to end
# Sent after each soft restart that worked (engine=, outcome=). Monitoring, a higher layer, answers with whether
# the engine's GPU memory went back to its post-start baseline (monitoring/telemetry/remedy.py): the answers end
# up in Outcome.memory and in the engine's events.
restarted_in_place = Signal()


class StepFailed(Exception):
    """A step that did not do its work in time: the soft restart gives way to the full one."""


@dataclass
class Outcome:
    soft: bool  # restarted in place
    steps: list[tuple[str, float]] = field(default_factory=list)  # (step, seconds), in order
    reason: str = ""  # why the full restart was done instead
    generation: int = 0  # after a fall-back: the generation the engine must reach to count as restarted
    memory: str = ""  # after a soft restart: its GPU memory against the post-start baseline, in words

    @property
    def seconds(self) -> float:
        return sum(seconds for _, seconds in self.steps)

    def summary(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.steps)


def why_not(engine: Engine) -> str:
    """Why this engine cannot be restarted softly now; empty when it can."""
    if not engine.soft_restart:
        return "soft restarts are not allowed for this engine"
    if not options.sleep_mode_available():
        return "this host's engine runtime has no sleep mode (vLLM's CPU build; sleep mode needs CUDA)"
    if engine.state != S.READY:
        return f"the engine is {engine.get_state_display().lower()}, not ready"
    proc = processes.find(engine.pid, engine.process_started_at)
    try:
        cmdline = proc.cmdline() if proc is not None else []
    except Exception:  # noqa: BLE001 - a process that vanished has no sleep mode
        cmdline = []
    if options.SLEEP_MODE_FLAG not in cmdline:
        return "the running process was started without sleep mode (restart it in full once to turn it on)"
    return ""


def run(engine: Engine, report: Callable[[str, float], None] = lambda step, seconds: None) -> Outcome:
    """Restart `engine` in place; on any failure request the full restart instead (Outcome.generation)."""
    ttl = engine.shutdown_timeout + 3 * settings.ENGINE_SOFT_RESTART_STEP_TIMEOUT + 60
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        with single_flight(f"engine:{engine.pk}", ttl_seconds=ttl) as acquired:
            if acquired:
                return _run_locked(engine, report)
        if time.monotonic() > deadline:
            return _full(engine, f"the engine's supervisor stayed busy for {LOCK_WAIT} s")
        time.sleep(0.2)  # the pace of retrying the lock the supervisor holds for one step


def _run_locked(engine: Engine, report) -> Outcome:
    engine.refresh_from_db()
    if reason := why_not(engine):
        return _full(engine, reason)
    if not supervisor.transition(engine, S.SOFT_RESTART, "soft restart: draining"):
        engine.refresh_from_db()
        return _full(engine, f"the engine changed to {engine.state} meanwhile")
    outcome = Outcome(soft=True)
    step_timeout = settings.ENGINE_SOFT_RESTART_STEP_TIMEOUT
    try:
        for name, step in (("drain", lambda: _drain(engine)),
                           ("sleep", lambda: _post(engine, "/sleep?level=1", step_timeout)),
                           ("wake", lambda: _post(engine, "/wake_up", step_timeout)),
                           ("probe", lambda: _probe(engine))):
            started = time.monotonic()
            try:
                step()
            except StepFailed as exc:
                raise StepFailed(f"{name}: {exc}") from None
            outcome.steps.append((name, time.monotonic() - started))
            report(name, outcome.steps[-1][1])
    except StepFailed as exc:
        return _full_from_soft(engine, f"soft restart failed at {exc}")
    now = timezone.now()
    reason = f"soft restart in {outcome.seconds:.1f} s ({outcome.summary()})"
    if supervisor.transition(engine, S.READY, reason, ready_at=now, last_probe_at=now, probe_failures=0,
                             last_soft_restart_seconds=outcome.seconds):
        Engine.objects.filter(pk=engine.pk).update(soft_restarts=F("soft_restarts") + 1)
    outcome.memory = _memory_after(engine, outcome)
    return outcome


def _memory_after(engine: Engine, outcome: Outcome) -> str:
    said = []
    for _receiver, answer in restarted_in_place.send_robust(sender=Engine, engine=engine, outcome=outcome):
        if isinstance(answer, Exception):  # a check that broke must not undo a soft restart that worked
            said.append(f"GPU memory not checked: {type(answer).__name__}: {answer}"[:200])
        elif answer:
            said.append(answer)
    memory = "; ".join(said)
    if memory:
        supervisor.record(engine, memory)
    return memory


def _drain(engine: Engine) -> None:
    """Wait until nothing is in flight, neither in the engine nor relayed by a gateway, for QUIET seconds
    (after DRAIN_MIN, which routers need to see the new state): like the drain before a stop."""
    started = time.monotonic()
    quiet_since = None
    while True:
        now = time.monotonic()
        busy = engine_client.in_flight(engine) or gateway_routing.in_flight(engine.name)
        quiet_since = None if busy else (quiet_since or now)
        if quiet_since and now - started >= supervisor.DRAIN_MIN and now - quiet_since >= supervisor.QUIET:
            return
        if now - started > engine.shutdown_timeout:
            raise StepFailed(f"requests still in flight after {engine.shutdown_timeout} s")
        time.sleep(0.1)  # the pace of reading the in-flight counts


def _post(engine: Engine, path: str, timeout: float) -> None:
    try:
        response = httpx.post(f"{engine.base_url}{path}", timeout=timeout)
    except httpx.TimeoutException:
        raise StepFailed(f"no answer in {timeout:.0f} s") from None
    except httpx.HTTPError as exc:
        raise StepFailed(f"{type(exc).__name__}: {exc}"[:200]) from None
    if response.status_code != 200:
        raise StepFailed(f"HTTP {response.status_code}: {response.text[:150]}")


def _probe(engine: Engine) -> None:
    probe = engine_client.generate_one_token(engine)
    if not probe.ok:
        raise StepFailed(probe.error)


def _full(engine: Engine, reason: str) -> Outcome:
    """The full restart instead, asked of the supervisor like any restart (it drains and stops gracefully)."""
    supervisor.record(engine, f"soft restart not possible: {reason}; full restart")
    return Outcome(soft=False, reason=reason, generation=control.request_restart(engine))


def _full_from_soft(engine: Engine, reason: str) -> Outcome:
    """A soft restart that failed half-way: already drained (or past the drain's deadline), so stop at once."""
    supervisor.restart_now(engine, f"{reason}; full restart")
    return Outcome(soft=False, reason=reason, generation=engine.restart_generation)
