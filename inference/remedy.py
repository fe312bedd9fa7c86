"""The remedies an engine can be given, mildest first: reset its prefix cache, restart it in place (soft), restart
it in full. This module takes one step and says what it did and how long it took; which step comes next, and
whether one cured the condition that asked for it, is the caller's (monitoring/telemetry/remedy.py, the ladder).

The prefix cache is reset through vLLM's POST /reset_prefix_cache, one of its development endpoints: they are
served only with VLLM_SERVER_DEV_MODE=1, which glmadmin sets where it starts an engine with sleep mode (soft
restarts allowed, on CUDA), on the engine's own address, never forwarded by the gateway. vLLM refuses the reset
({"success": false}) while running requests hold cached blocks. So the mild steps are offered only to an engine
that can take a soft restart now; every other engine goes straight to the full restart, as before.
"""

import logging
import time
from dataclasses import dataclass

import httpx
from django.conf import settings

from alerts.incidents import record_action

from . import control, soft_restart, supervisor
from .models import Engine
from .models import EngineState as S

log = logging.getLogger(__name__)

PREFIX_CACHE, SOFT, FULL = "prefix-cache", "soft", "full"
NAMES = {PREFIX_CACHE: "prefix cache reset", SOFT: "soft restart", FULL: "full restart"}


@dataclass(frozen=True)
class Taken:
    step: str  # the step now under way or done: FULL after a soft restart that fell back
    seconds: float  # how long the step took (a full restart: its request; it is timed by full_restart_done)
    done: bool  # it did its work (False: refused or failed; a soft restart that fell back to the full one)
    note: str  # what happened, in words
    generation: int = 0  # FULL: the generation the engine must reach to count as restarted
    memory: str = ""  # SOFT: whether the GPU memory went back to its post-start baseline


def ladder(engine: Engine) -> tuple[list[str], str]:
    """The steps this engine can take, mildest first, and why the mild ones are left out ("" when they are not)."""
    why_not = soft_restart.why_not(engine)
    return ([FULL], why_not) if why_not else ([PREFIX_CACHE, SOFT, FULL], "")


def take(engine: Engine, step: str, reason: str) -> Taken:
    return {PREFIX_CACHE: reset_prefix_cache, SOFT: soft, FULL: full}[step](engine, reason)


def reset_prefix_cache(engine: Engine, reason: str = "") -> Taken:
    timeout = settings.ENGINE_SOFT_RESTART_STEP_TIMEOUT
    started = time.monotonic()
    try:
        response = httpx.post(f"{engine.base_url}/reset_prefix_cache", timeout=timeout)
    except httpx.TimeoutException:
        return _reset(started, False, f"no answer in {timeout:g} s")
    except httpx.HTTPError as exc:
        return _reset(started, False, f"{type(exc).__name__}: {exc}"[:200])
    if response.status_code == 404:
        return _reset(started, False, "the engine does not serve /reset_prefix_cache (no VLLM_SERVER_DEV_MODE)")
    if response.status_code != 200:
        return _reset(started, False, f"HTTP {response.status_code}: {response.text[:150]}")
    try:
        success = bool(response.json().get("success", True))
    except ValueError:
        success = True  # older vLLM answers 200 with no body
    if not success:
        return _reset(started, False, "vLLM refused it: running requests still hold cached blocks")
    return _reset(started, True, "")


def _reset(started: float, done: bool, why: str) -> Taken:
    seconds = time.monotonic() - started
    note = f"prefix cache reset in {seconds:.1f} s" if done else f"prefix cache not reset after {seconds:.1f} s ({why})"
    return Taken(PREFIX_CACHE, seconds, done, note)


def soft(engine: Engine, reason: str = "") -> Taken:
    """A soft restart; one that cannot be done or fails becomes the full restart (the supervisor is asked now)."""
    started = time.monotonic()
    outcome = soft_restart.run(engine)
    if outcome.soft:
        return Taken(SOFT, outcome.seconds, True, f"soft restart in {outcome.seconds:.1f} s ({outcome.summary()})",
                     memory=outcome.memory)
    _kick(engine)
    return Taken(FULL, time.monotonic() - started, False,
                 f"soft restart not done ({outcome.reason}); full restart instead", generation=outcome.generation)


def full(engine: Engine, reason: str) -> Taken:
    """Ask for the full restart; the supervisor drains, stops and starts the engine."""
    generation = control.request_automatic_restart(engine)
    if generation is None:
        return Taken(FULL, 0.0, False, "full restart not taken: the engine was stopped meanwhile")
    _kick(engine)
    log.warning("remedy: full restart of engine %s: %s", engine.name, reason)
    return Taken(FULL, 0.0, True, "full restart requested", generation=generation)


def full_restart_done(engine: Engine, generation: int) -> tuple[bool, str]:
    """(finished, what happened) of a full restart asked for as `generation`; (False, "") while under way."""
    engine.refresh_from_db()
    if engine.running_generation >= generation and engine.state == S.READY:
        return True, ""
    if engine.state == S.FAILED:
        return True, f"the engine failed: {engine.state_reason}"
    if not engine.enabled:
        return True, "the engine was stopped meanwhile"
    return False, ""


def record(engine: Engine, source: str | None, note: str) -> None:
    """One remedy event: in the incident's events (when a rule asked) and in the engine's history."""
    if source:
        record_action(source, note)
    supervisor.record(engine, f"remedy: {note}")


def _kick(engine: Engine) -> None:
    try:
        control.kick(engine)
    except Exception:  # noqa: BLE001 - the host's periodic reconcile carries the restart out anyway
        log.exception("could not kick engine %s", engine.name)
