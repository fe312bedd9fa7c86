"""This app's part of the live page state (glmadmin/live.py): what the status bar and the cards say
about the engines."""

from .models import Engine
from .models import EngineState as S

TROUBLE = {S.FAILED, S.BACKOFF, S.UNHEALTHY}


def engine_summary(rows: list[tuple[str, str, bool]] | None = None) -> dict:
    """The status bar's word on engines, from (name, state, enabled) rows (read if not given)."""
    rows = engine_rows() if rows is None else rows
    # A failed engine counts even if disabled: it is the one that needs attention.
    states = [state for _, state, enabled in rows if enabled or state == S.FAILED]
    if not states:
        return {"state": "none", "label": "no engines"}
    ready = states.count(S.READY)
    if ready == len(states):
        state = "ready"
    elif TROUBLE & set(states):
        state = "down"
    else:
        state = "loading"
    return {"state": state, "label": f"{ready}/{len(states)} ready"}


def engine_rows() -> list[tuple[str, str, bool]]:
    return list(Engine.objects.values_list("name", "state", "enabled"))


FALLBACK = {"engine": {"state": "unknown", "label": "unknown"}, "engines": []}


def part() -> dict:
    rows = engine_rows()  # one query serves the status bar and the engine cards
    return {"engine": engine_summary(rows), "engines": [{"name": name, "state": state} for name, state, _ in rows]}
