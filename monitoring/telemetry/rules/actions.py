"""What a rule may do besides raising an incident: restart an engine, at most once per cool-down (through the
remedy ladder where the rule's condition is one a milder step may cure), or drain and stop the engine of a
failing GPU."""

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from inference import control
from inference.models import Engine, EngineState

from ...models import RuleRestart
from .. import remedy

log = logging.getLogger(__name__)


def restart(engine: Engine, reason: str, at: datetime, cooldown_minutes: int) -> str:
    """Restart `engine` through the pool's normal path unless a rule did so within the cool-down.

    Returns what happened, in words, for the incident's message.
    """
    if engine.state != EngineState.READY:
        return f"engine {engine.name} not restarted: it is {engine.get_state_display().lower()} already"
    if not _claim(engine, reason, at, timedelta(minutes=cooldown_minutes)):
        return _cooling_down(engine, cooldown_minutes)
    control.request_restart(engine)
    try:
        control.kick(engine)
    except Exception:  # noqa: BLE001 - the host's periodic reconcile carries the restart out anyway
        log.exception("could not kick engine %s after a rule restart", engine.name)
    log.warning("rule restart of engine %s: %s", engine.name, reason)
    return f"engine {engine.name} restarted at {_clock(at)}"


def remedy_or_restart(engine: Engine, reason: str, at: datetime, cooldown_minutes: int, source: str,
                      condition: dict | None) -> tuple[str, dict | None]:
    """Like restart(), through the remedy ladder where the engine can take its milder steps (prefix cache reset,
    soft restart): returns what happened in words, and the ladder's plan to begin once the incident exists."""
    plan, said = remedy.plan(engine, source, condition, reason) if condition else (None, "")
    if plan is None or len(plan["steps"]) == 1:
        return restart(engine, reason, at, cooldown_minutes), None
    if engine.state != EngineState.READY:
        return f"engine {engine.name} not restarted: it is {engine.get_state_display().lower()} already", None
    if not _claim(engine, reason, at, timedelta(minutes=cooldown_minutes)):
        return _cooling_down(engine, cooldown_minutes), None
    log.warning("rule remedy for engine %s: %s", engine.name, reason)
    return f"engine {engine.name}: {said} (from {_clock(at)})", plan


def _cooling_down(engine: Engine, cooldown_minutes: int) -> str:
    last = RuleRestart.objects.filter(engine=engine).values_list("restarted_at", flat=True).first()
    when = f" at {_clock(last)}" if last else ""
    return (f"engine {engine.name} not restarted: a rule restarted it{when}, within the "
            f"{cooldown_minutes} min cool-down")


def stop(engine: Engine, reason: str) -> str:
    """Drain and stop `engine` (its GPU is failing): the gateway stops routing to it at once (draining), and it
    stays stopped (disabled) until an operator starts it again. Returns what happened, in words."""
    if not engine.enabled:
        return f"engine {engine.name} is stopped already"
    control.request_stop(engine)
    try:
        control.kick(engine)
    except Exception:  # noqa: BLE001 - the host's periodic reconcile carries the stop out anyway
        log.exception("could not kick engine %s after a rule stop", engine.name)
    log.warning("rule stop of engine %s: %s", engine.name, reason)
    return (f"engine {engine.name} drained and stopped (the gateway no longer routes to it); start it again "
            "once the GPU is fixed")


def _claim(engine: Engine, reason: str, at: datetime, cooldown: timedelta) -> bool:
    # Two evaluations at once (or two rules in one) must not both restart: the row is the claim.
    reason = reason[:300]
    if RuleRestart.objects.filter(engine=engine, restarted_at__lte=at - cooldown).update(restarted_at=at,
                                                                                       reason=reason):
        return True
    try:
        with transaction.atomic():
            RuleRestart.objects.create(engine=engine, restarted_at=at, reason=reason)
    except IntegrityError:
        return False  # within the cool-down
    return True


def _clock(at: datetime) -> str:
    return timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S %Z")
