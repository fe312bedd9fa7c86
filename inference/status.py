"""What the status bar and the live state say about the engines."""

from django.db.models import Q

from .models import Engine
from .models import EngineState as S

TROUBLE = {S.FAILED, S.BACKOFF, S.UNHEALTHY}


def engine_summary() -> dict:
    # A failed engine counts even if disabled: it is the one that needs attention.
    states = list(Engine.objects.filter(Q(enabled=True) | Q(state=S.FAILED)).values_list("state", flat=True))
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


def engine_states() -> list[dict]:
    return [{"name": name, "state": state} for name, state in Engine.objects.values_list("name", "state")]
