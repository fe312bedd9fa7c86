"""What the beat tasks run: take a cycle, store it, hand it to the rules, tell the pages."""

import logging

from glmadmin import live

from . import charts, latest, sampler, store
from .readings import Cycle
from .rules import evaluate as rules

log = logging.getLogger(__name__)


def sample() -> Cycle:
    cycle = sampler.take_cycle()
    store.save(cycle)
    latest.remember(cycle)
    charts.refresh(cycle.taken_at)
    try:
        rules.evaluate(cycle)
    except Exception:
        # The samples are stored already; a broken rule must not cost the history, nor the next cycle.
        log.exception("telemetry rules failed on the cycle of %s", cycle.taken_at.isoformat())
    live.publish()
    return cycle


def maintain() -> str:
    written = store.downsample()
    deleted = store.prune()
    return f"{written} minute average(s) written, {deleted} old sample(s) deleted"
