"""What the rules remember between cycles: one Redis hash per host, read and written once per cycle.

Each condition on each subject (a "track", keyed by its incident source) remembers its current
streak of like observations: since when, until when, how many. A streak continues only while
observations follow each other within the allowed gap, so a condition seen 3 minutes ago and
again now, with nothing in between, has held for no time at all. State lives in Redis, so a
worker restart loses nothing; if Redis itself lost it, the open incidents in the database say
which conditions were raised, and the streaks start again.
"""

import json
from dataclasses import asdict, dataclass, field

from alerts.models import Incident
from glmadmin.lib import redis as rd

from ...models.telemetry_rules import DAY


class Outcome:
    TRUE = "true"  # the condition holds
    CLEAR = "clear"  # clearly not (below the threshold less its margin)
    HOLD = "hold"  # in between: neither raises nor clears
    GONE = "gone"  # the subject no longer exists as it was (engine restarted, removed): clears at once


@dataclass
class Track:
    rule: str
    engine_id: int | None = None
    firing: bool = False
    withheld: bool = False  # raised without the restart its rule would make: it may come later
    streak: str = ""
    since: float | None = None  # epoch seconds
    last: float | None = None
    count: int = 0

    def observe(self, outcome: str, at: float, max_gap: float) -> None:
        if self.streak == outcome and self.last is not None and 0 <= at - self.last <= max_gap:
            self.last, self.count = at, self.count + 1
        else:
            self.streak, self.since, self.last, self.count = outcome, at, at, 1

    def held(self, outcome: str, at: float) -> float:
        """Seconds the current streak of `outcome` has lasted; -1 if the streak is of something else."""
        return at - self.since if self.streak == outcome and self.since is not None else -1.0

    def stale(self, at: float, max_gap: float) -> bool:
        """Nothing worth keeping: not raised, and its streak can no longer continue."""
        return not self.firing and (self.last is None or at - self.last > max_gap or self.streak != Outcome.TRUE)


@dataclass
class Baseline:
    """The TTFT p95 an engine run started with: collected after it became ready, then frozen."""

    run: str
    values: list[float] = field(default_factory=list)
    value: float | None = None


INIT = "_init"
BASELINE = "baseline:"
# An engine's GPU memory when it first became ready after a start, per GPU: {"process": "pid:start time",
# "gpus": {"0": bytes}, "at": epoch}. A soft restart is checked against it (monitoring/telemetry/remedy.py).
MEMORY = "memory:"


def hash_key(host: str) -> str:
    return rd.key("telemetry", "rules", host)


def last_cycle_key() -> str:
    """A hash: host -> when its last cycle was evaluated (epoch seconds), read by the no-data watchdog."""
    return rd.key("telemetry", "last_cycle_by_host")


def source_prefix(host: str) -> str:
    return f"telemetry:{host}:"


class State:
    def __init__(self, host: str):
        self.host = host
        self.tracks: dict[str, Track] = {}
        self.baselines: dict[int, Baseline] = {}
        self.memory: dict[int, dict] = {}
        self._stored: dict[str, str] = {}

    @classmethod
    def load(cls, host: str) -> "State":
        state = cls(host)
        raw = rd.client().hgetall(hash_key(host))
        if INIT not in raw:
            raw = state._from_incidents()
        state._stored = raw
        for name, text in raw.items():
            if name.startswith(BASELINE):
                state.baselines[int(name.removeprefix(BASELINE))] = Baseline(**json.loads(text))
            elif name.startswith(MEMORY):
                state.memory[int(name.removeprefix(MEMORY))] = json.loads(text)
            elif name != INIT:
                state.tracks[name] = Track(**json.loads(text))
        return state

    def _from_incidents(self) -> dict[str, str]:
        # Redis lost our state (or never had it): what is raised is what is open in the database.
        raw = {}
        for source in Incident.objects.open().filter(source__startswith=source_prefix(self.host)).values_list(
                "source", flat=True):
            rule, engine_id = parse_source(source)
            raw[source] = json.dumps(asdict(Track(rule=rule, engine_id=engine_id, firing=True)))
        return raw

    def track(self, source: str, rule: str, engine_id: int | None) -> Track:
        if source not in self.tracks:
            self.tracks[source] = Track(rule=rule, engine_id=engine_id)
        return self.tracks[source]

    def save(self, taken_at: float) -> None:
        fields = {INIT: "1"}
        # vars(), not asdict(): asdict deep-copies a baseline's hundreds of values on every cycle.
        fields.update({source: json.dumps(vars(t)) for source, t in self.tracks.items()})
        fields.update({f"{BASELINE}{pk}": json.dumps(vars(b)) for pk, b in self.baselines.items()})
        fields.update({f"{MEMORY}{pk}": json.dumps(m, sort_keys=True) for pk, m in self.memory.items()})
        changed = {name: text for name, text in fields.items() if self._stored.get(name) != text}
        removed = [name for name in self._stored if name not in fields]
        pipe = rd.client().pipeline(transaction=False)
        if changed:
            pipe.hset(hash_key(self.host), mapping=changed)
        if removed:
            pipe.hdel(hash_key(self.host), *removed)
        pipe.expire(hash_key(self.host), 7 * DAY)  # a host that is gone for good leaves nothing behind
        pipe.hset(last_cycle_key(), self.host, repr(taken_at))
        pipe.execute()
        self._stored = fields


def memory_baseline(host: str, engine_id: int) -> dict | None:
    """The engine's post-start GPU memory as the rules recorded it (one Redis read), or None."""
    raw = rd.client().hget(hash_key(host), f"{MEMORY}{engine_id}")
    return json.loads(raw) if raw else None


def make_source(host: str, subject: str, rule: str, extra: str = "") -> str:
    return f"telemetry:{host}:{subject}:{rule}" + (f":{extra}" if extra else "")


def parse_source(source: str) -> tuple[str, int | None]:
    """(rule, engine id or None) of a source made by make_source."""
    _, _, subject, rule, *_ = source.split(":")
    engine_id = int(subject.removeprefix("engine")) if subject.startswith("engine") else None
    return rule, engine_id
