"""Telemetry rules (thresholds in Django admin): incidents and actions from each sampling cycle.

A condition is raised once it has held for its duration without a gap in the data, and its
incident resolves once the condition has been clear (below the threshold less its margin) for
the clear duration. A condition that cannot be judged (no reading) neither raises nor clears.
Per cycle: two queries (the rules with the sampling interval; this host's engines) and two
Redis round trips; more only when something is raised, cleared or restarted.
"""

from dataclasses import dataclass

from django.utils import timezone

from alerts.incidents import drive
from alerts.models import Incident
from inference.models import Engine, EngineState

from ...models import TelemetryRules
from .. import remedy
from ..readings import Cycle
from .actions import remedy_or_restart, stop
from .checks import RULES, Context, Observation, observe
from .state import Outcome, State, Track


@dataclass(frozen=True)
class Change:
    source: str
    raised: bool
    observation: Observation | None


def evaluate(cycle: Cycle) -> list[Change]:
    """Called by the sampler after each stored cycle (monitoring.telemetry.readings.Cycle)."""
    host = cycle.host_name
    rules = TelemetryRules.current()
    engines = {e.pk: e for e in Engine.objects.filter(host=host)}
    state = State.load(host)
    at = cycle.taken_at.timestamp()
    ctx = Context(cycle, rules, host, engines, state.baselines, set(state.tracks))
    changes, seen = [], set()
    for obs in observe(ctx):
        seen.add(obs.source)
        track = state.track(obs.source, obs.rule.name, obs.engine.pk if obs.engine else None)
        track.observe(obs.outcome, at, rules.max_gap_seconds)
        if _should_raise(track, obs, at):
            changes.append(_raise(track, obs, cycle, rules))
        elif _should_clear(track, obs, at, rules.clear_seconds):
            changes.append(_clear(obs.source, track, obs.detail, obs))
        elif track.firing and track.withheld and obs.restart:
            _restart_late(track, obs, cycle, rules)
    for source, track in state.tracks.items():
        if track.firing and source not in seen:
            reason = _why_not_applicable(track, rules, engines)
            if reason:
                changes.append(_clear(source, track, reason, None))
    state.tracks = {s: t for s, t in state.tracks.items() if not t.stale(at, rules.max_gap_seconds)}
    state.baselines = {pk: b for pk, b in state.baselines.items() if pk in engines}
    remedy.note_baselines(engines.values(), cycle, state.memory)
    state.memory = {pk: m for pk, m in state.memory.items() if pk in engines}
    state.save(at)
    return [c for c in changes if c]  # the sampler publishes the live state (and so the banners) next


def _should_raise(track: Track, obs: Observation, at: float) -> bool:
    return (not track.firing and track.held(Outcome.TRUE, at) >= obs.for_seconds
            and track.count >= obs.min_cycles)


def _should_clear(track: Track, obs: Observation, at: float, clear_seconds: int) -> bool:
    return track.firing and (obs.outcome == Outcome.GONE or track.held(Outcome.CLEAR, at) >= clear_seconds)


def _raise(track: Track, obs: Observation, cycle: Cycle, rules: TelemetryRules) -> Change | None:
    track.firing = True
    message = obs.detail + (f" for {_duration(track.held(Outcome.TRUE, cycle.taken_at.timestamp()))}"
                            if obs.for_seconds else "")
    plan = None
    if obs.restart and obs.engine is not None:
        said, plan = remedy_or_restart(obs.engine, f"{obs.title}: {obs.detail}", cycle.taken_at,
                                       rules.restart_cooldown_minutes, obs.source, obs.remedy)
        message += "; " + said
    elif obs.stop and obs.engine is not None:
        message += "; " + stop(obs.engine, f"{obs.title}: {obs.detail}")
    elif obs.withheld:
        message += "; " + obs.withheld
        track.withheld = True
    transition = drive(obs.source, obs.rule.level, kind=obs.rule.kind, title=obs.title, value=obs.value,
                       message=message[:500], host=cycle.host_name)
    if plan is not None:
        remedy.begin(plan)  # each step is recorded in the incident's events: it exists now
    return Change(obs.source, True, obs) if transition else None


def _restart_late(track: Track, obs: Observation, cycle: Cycle, rules: TelemetryRules) -> None:
    """The restart withheld when the condition was raised, once it would help (the foreign process left,
    the engine grew past its reservation); its outcome is added to the open incident's message."""
    track.withheld = False
    outcome, plan = remedy_or_restart(obs.engine, f"{obs.title}: {obs.detail}", cycle.taken_at,
                                      rules.restart_cooldown_minutes, obs.source, obs.remedy)
    incident = Incident.objects.open().filter(source=obs.source).first()
    if incident is not None:
        Incident.objects.filter(pk=incident.pk).update(message=f"{incident.message}; later {outcome}"[:500],
                                                       updated_at=timezone.now())
    if plan is not None:
        remedy.begin(plan)


def _clear(source: str, track: Track, message: str, obs: Observation | None) -> Change | None:
    track.firing = False
    rule = RULES[track.rule]
    transition = drive(source, None, kind=rule.kind, title="", value=obs.value if obs else None,
                       message=message[:500])
    return Change(source, False, obs) if transition else None


def _why_not_applicable(track: Track, rules: TelemetryRules, engines: dict[int, Engine]) -> str:
    """Why a raised condition that was not observed this cycle can be resolved; "" to keep it."""
    if not getattr(rules, RULES[track.rule].enabled_field):
        return "the rule was switched off"
    if track.engine_id is None:
        return ""
    engine = engines.get(track.engine_id)
    if engine is None:
        return "the engine was removed"
    if not engine.enabled:
        return f"engine {engine.name} was disabled"
    if engine.state == EngineState.FAILED:
        return f"engine {engine.name} failed (see its own incident)"
    return ""


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
