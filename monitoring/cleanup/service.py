"""Run every (or one) policy once: what the task, the command, the buttons and the disk-alert trigger call."""

import logging
import math
import os
from dataclasses import dataclass

import redis
from django.utils import timezone

from alerts.models import Incident
from glmadmin import live
from glmadmin.lib import safewalk

from ..models import CleanupPolicy, CleanupRun, LogPolicy
from . import journal, logs
from .policy import Refused, checked_root
from .run import Busy, run_policy

log = logging.getLogger(__name__)


class UnknownPolicy(Exception):
    pass


@dataclass(frozen=True)
class Outcome:
    name: str
    run: CleanupRun | None = None
    busy: str = ""

    def __str__(self):
        if self.run is None:
            return f"{self.name}: skipped, {self.busy}"
        run = self.run
        head = f"{run.policy_name} ({run.get_kind_display().lower()}{', dry run' if run.dry_run else ''})"
        lines = [f"{head}: {run.message}"]
        if run.skipped:
            lines.append("  kept: " + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in run.skipped.items()))
        lines += [f"  error: {path}: {error}" for path, error in run.errors[:10]]
        lines += [f"  passed over: {what}: {why}" for what, why in run.notes[:10]]
        return "\n".join(lines)


def run_all(*, trigger: str, dry_run: bool = False, policy_name: str | None = None, incident: Incident | None = None,
            user=None) -> list[Outcome]:
    caches = CleanupPolicy.objects.filter(enabled=True)
    log_policies = LogPolicy.objects.filter(enabled=True)
    if policy_name:
        caches = CleanupPolicy.objects.filter(name=policy_name)
        log_policies = LogPolicy.objects.filter(name=policy_name)
        if not caches and not log_policies:
            names = sorted([*CleanupPolicy.objects.values_list("name", flat=True),
                            *LogPolicy.objects.values_list("name", flat=True)])
            raise UnknownPolicy(f"no cleanup or log policy is named {policy_name!r} (there are: "
                                f"{', '.join(names) or 'none'})")
    if incident is not None:
        caches = [p for p in caches if _same_filesystem(p.root, incident.source.removeprefix("disk:"))]
    outcomes = []
    for policy in caches:
        outcomes.append(_guarded(policy.name, lambda p=policy: run_policy(
            p, trigger=trigger, dry_run=dry_run, incident=incident, user=user)))
    for policy in log_policies:
        outcomes.append(_guarded(policy.name, lambda p=policy: _logs(p, trigger, dry_run, incident, user)))
    publish()
    return outcomes


def publish() -> None:
    """Push the new CACHE size (and any cleanup incident) to open pages; the files are gone either way."""
    try:
        live.publish()
    except redis.RedisError as exc:
        log.warning("cleanup done, but the live status could not be pushed: %s", exc)


def _logs(policy, trigger, dry_run, incident, user) -> CleanupRun:
    run = logs.maintain(policy, trigger=trigger, dry_run=dry_run, incident=incident, user=user)
    journal.write(run)
    return run


def _guarded(name, call) -> Outcome:
    try:
        return Outcome(name, run=call())
    except Busy as exc:
        return Outcome(name, busy=str(exc))


def _same_filesystem(a: str, b: str) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def measure() -> bool:
    """Store each enabled policy's current size (the status bar's CACHE); True if one changed."""
    changed = False
    for policy in CleanupPolicy.objects.filter(enabled=True):
        try:
            # Measured only: no file is listed one by one (every file counts as younger than -inf).
            size = safewalk.scan(checked_root(policy.root), older_than=-math.inf).total_bytes
        except (Refused, OSError):
            size = None
        changed |= size != policy.last_size_bytes
        CleanupPolicy.objects.filter(pk=policy.pk).update(last_size_bytes=size, last_size_at=timezone.now())
    return changed
