"""A sampler that stops is "no data", never a silent all-clear: one incident per silent host.

The rules only run when a cycle arrives, so silence has to be noticed from outside: a beat task
compares, for every host expected to sample, the time of its last evaluated cycle (kept in Redis
by rule_state) with the sampling interval. A host is expected to sample when it has an enabled
sampling schedule (created by its worker at start) or an enabled engine. Before a host's first
cycle ever (or after Redis lost the mark) its silence is timed from the first check that found none.
"""

import json

from django.utils import timezone

from alerts.incidents import drive
from alerts.levels import Level
from alerts.models import Incident
from glmadmin import live
from glmadmin.lib import redis as rd

from ...models import TelemetryRules
from ..schedule import SAMPLE_TASK, schedule_name
from .state import last_cycle_key

SOURCE_PREFIX = "telemetry:no-data:"


def source(host: str) -> str:
    return f"{SOURCE_PREFIX}{host}"


def silent_since_key() -> str:
    return rd.key("telemetry", "silent_since_by_host")  # a hash: host -> epoch seconds


def check_data_flow() -> list[tuple[str, str]]:
    """(host, transition kind) for each host whose no-data incident opened or resolved."""
    rules = TelemetryRules.current()
    expected = expected_hosts()
    open_hosts = {s.removeprefix(SOURCE_PREFIX) for s in Incident.objects.open().filter(
        source__startswith=SOURCE_PREFIX).values_list("source", flat=True)}
    last = rd.client().hgetall(last_cycle_key())
    changes = []
    for host in sorted(expected | open_hosts):
        level, age, message = _judge(host, host in expected, last.get(host), rules)
        transition = drive(source(host), level, kind=Incident.Kind.TELEMETRY, title=f"Telemetry: no data from {host}",
                           value=age, message=message[:500], host=host)
        if transition:
            changes.append((host, transition.kind))
    if changes:
        live.publish(force=True)
    return changes


def _judge(host: str, expected: bool, last: str | None, rules: TelemetryRules) -> tuple[str | None, float | None, str]:
    """(level or None, seconds of silence, message) for one host."""
    if not rules.no_data_enabled:
        return None, None, "the no-data rule was switched off"
    if not expected:
        return None, None, f"host {host} is no longer expected to sample (no sampling schedule, no enabled engine)"
    now = timezone.now().timestamp()
    age = now - _last_sign_of_life(host, last, now)
    if age > rules.max_gap_seconds:
        return Level.ORANGE, age, _silence(host, age, rules)
    return None, age, f"telemetry samples from host {host} arrive again (the last {age:.0f} s ago)"


def expected_hosts() -> set[str]:
    from django_celery_beat.models import PeriodicTask

    from inference.models import Engine

    hosts = set(Engine.objects.filter(enabled=True).values_list("host", flat=True).distinct())
    for kwargs in PeriodicTask.objects.filter(task=SAMPLE_TASK, enabled=True).values_list("kwargs", flat=True):
        host = json.loads(kwargs or "{}").get("host")
        if host:
            hosts.add(host)
    return hosts


def _silence(host: str, age: float, rules: TelemetryRules) -> str:
    return (f"no telemetry sample from host {host} has reached the rules for {age:.0f} s (one is expected every "
            f"{rules.sample_interval} s): its worker (queue engines.{host}) or beat is down, so no GPU or engine "
            f"rule sees anything there. A host gone for good: disable its engines and delete the periodic task "
            f"\"{schedule_name(host)}\"")


def _last_sign_of_life(host: str, last: str | None, now: float) -> float:
    client = rd.client()
    if last is not None:
        client.hdel(silent_since_key(), host)
        return float(last)
    client.hsetnx(silent_since_key(), host, repr(now))
    return float(client.hget(silent_since_key(), host) or now)
