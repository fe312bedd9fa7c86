"""Whether new inference requests are admitted.

The open red incidents in the database are the truth. The gateway asks on
every request, so the answer is also kept in one Redis key, rewritten by
every disk check; if the key is missing (Redis restarted) it is recomputed.
"""

import json
from dataclasses import dataclass

from glmadmin.lib import redis as rd

from .levels import Level
from .models import Incident


@dataclass(frozen=True)
class Admission:
    paused: bool
    reason: str = ""

    def as_dict(self) -> dict:
        return {"paused": self.paused, "reason": self.reason}


def from_incidents(incidents) -> Admission:
    reds = [incident for incident in incidents if incident.pauses_admission]
    if not reds:
        return Admission(paused=False)
    return Admission(paused=True, reason="; ".join(incident.message for incident in reds))


def sync() -> Admission:
    state = from_incidents(Incident.objects.open().filter(level=Level.RED).order_by("opened_at"))
    rd.client().set(rd.key("admission"), json.dumps(state.as_dict()))
    return state


def current() -> Admission:
    raw = rd.client().get(rd.key("admission"))
    if raw is None:
        return sync()
    return Admission(**json.loads(raw))
