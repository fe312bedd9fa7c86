"""What operators ask of engines: the one implementation behind the commands, the dashboard and beat.

Each request changes desired state in the database; the supervisor makes it
so. wait() steps the supervisor itself for engines of this host, so a command
works even while the Celery worker is down, and reports each state change.
"""

import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import F

from glmadmin import jobs
from glmadmin.schedules import host_queue  # also control.host_queue, for its callers

from . import supervisor
from .models import Engine, EngineEvent
from .models import EngineState as S

SETTLED = {S.READY, S.STOPPED, S.FAILED}


class EngineError(Exception):
    """A request that cannot be done, with a message for the operator."""


def select(names: Iterable[str], all_engines: bool = False) -> list[Engine]:
    if all_engines:
        engines = list(Engine.objects.all())
        if not engines:
            raise EngineError("no engines are defined: add one in the admin under Engines")
        return engines
    names = list(names)
    if not names:
        raise EngineError("name at least one engine, or use --all")
    engines = {e.name: e for e in Engine.objects.filter(name__in=names)}
    missing = [n for n in names if n not in engines]
    if missing:
        known = ", ".join(Engine.objects.values_list("name", flat=True)) or "none"
        raise EngineError(f"unknown engine {missing[0]!r} (engines: {known})")
    return [engines[n] for n in names]


def _clear_failure(engine: Engine) -> None:
    # An operator acting on a failed engine is the "until an operator acts" of crash-loop detection.
    Engine.objects.filter(pk=engine.pk, state=S.FAILED).update(state=S.STOPPED, recent_failures=[],
                                                               state_reason="operator action")


def request_restart(engine: Engine) -> int:
    """Ask for a restart; returns the generation the engine must reach to count as restarted."""
    with transaction.atomic():
        _clear_failure(engine)
        Engine.objects.filter(pk=engine.pk).update(enabled=True, restart_generation=F("restart_generation") + 1)
        return Engine.objects.values_list("restart_generation", flat=True).get(pk=engine.pk)


def request_automatic_restart(engine: Engine) -> int | None:
    """A restart that glmadmin itself decided on (a remedy): like request_restart, but claimed only while the
    engine is enabled, so that an engine an operator stopped meanwhile is never started again by it. None: not
    enabled, nothing asked."""
    with transaction.atomic():
        if not Engine.objects.filter(pk=engine.pk, enabled=True).update(
                restart_generation=F("restart_generation") + 1):
            return None
        return Engine.objects.values_list("restart_generation", flat=True).get(pk=engine.pk)


def request_start(engine: Engine) -> None:
    with transaction.atomic():
        _clear_failure(engine)
        Engine.objects.filter(pk=engine.pk).update(enabled=True)


def request_stop(engine: Engine) -> None:
    Engine.objects.filter(pk=engine.pk).update(enabled=False)


def soft_restart_later(engine: Engine) -> None:
    jobs.enqueue("inference.tasks.restart_engine", engine.pk, queue=host_queue(engine.host), expires=300)


def kick(engine: Engine) -> None:
    """Have the engine's host act now instead of at its next scheduled reconcile."""
    jobs.enqueue("inference.tasks.reconcile_engine", engine.pk, queue=host_queue(engine.host), expires=30)


def wait(engines: list[Engine], until: set[str], timeout: float,
         report: Callable[[Engine, EngineEvent], None] = lambda engine, event: None,
         generations: dict[int, int] | None = None) -> None:
    """Step or watch engines until each one's state is in `until` (and, after a restart, it runs the
    generation asked for). Engines of this host are stepped here, all of them on each round.

    Raises EngineError on timeout or when an engine settles in a state not asked for.
    """
    generations = generations or {}
    pending = {engine.pk: engine for engine in engines}
    seen = {engine.pk: EngineEvent.objects.filter(engine=engine).order_by("-pk").values_list("pk", flat=True).first()
            or 0 for engine in engines}
    deadline = time.monotonic() + timeout
    while pending:
        for engine in list(pending.values()):
            if engine.host == settings.GLMADMIN_HOST_NAME:
                supervisor.reconcile(engine.pk)
            for event in EngineEvent.objects.filter(engine=engine, pk__gt=seen[engine.pk]).order_by("pk"):
                seen[engine.pk] = event.pk
                report(engine, event)
            engine.refresh_from_db()
            current = engine.running_generation >= generations.get(engine.pk, 0)
            if engine.state in until and current:
                del pending[engine.pk]
            elif engine.state in SETTLED - until and current:
                raise EngineError(f"engine {engine.name} is {engine.state}: {engine.state_reason}")
        if pending and time.monotonic() > deadline:
            engine = next(iter(pending.values()))
            raise EngineError(f"engine {engine.name} not {'/'.join(sorted(until))} after {timeout:.0f} s "
                              f"(state {engine.state}: {engine.state_reason})")
        if pending:
            time.sleep(0.2)  # the pace of the supervisor's steps while someone waits
