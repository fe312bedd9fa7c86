"""Tensor-parallel imbalance: one of an engine's GPUs idle while its others are busy."""

import pytest

from alerts.levels import Level
from alerts.models import Incident
from tests.support import telemetry_rules as support
from tests.support.telemetry_rules import cycle, gpu, open_incident, ready_engine

clock, rule_settings = support.clock, support.rule_settings  # fixtures of this module


@pytest.fixture
def engine(db):
    return ready_engine("glm", gpu_ids="0,1,2,3")


def utilisation(*values):
    return lambda: cycle(gpus=[gpu(i, memory=85, util=u) for i, u in enumerate(values)])


def test_the_idle_gpu_is_named_after_the_duration(clock, engine):
    clock.run(110, utilisation(91, 95, 1, 88))
    assert open_incident("imbalance") is None
    clock.step(utilisation(91, 95, 1, 88))
    incident = open_incident("imbalance")
    assert (incident.level, incident.kind) == (Level.YELLOW, Incident.Kind.GPU)
    assert incident.title == "Tensor-parallel imbalance on engine glm"
    assert incident.message.startswith("GPU 2 idle while GPUs 0, 1, 3 busy on engine glm: "
                                       "GPU 0 (91 %), GPU 1 (95 %), GPU 2 (1 %), GPU 3 (88 %)")


def test_balanced_or_all_idle_is_fine(clock, engine):
    clock.run(300, utilisation(0, 0, 0, 0))  # idle engine
    clock.run(300, utilisation(90, 92, 93, 91))
    clock.run(300, utilisation(2, 30, 95, 95))  # one idle but not all others busy
    clock.run(300, utilisation(90, None, 1, 95))  # a reading missing: cannot judge
    assert not Incident.objects.exists()


def test_resolves_when_balanced_again(clock, engine):
    clock.run(120, utilisation(91, 95, 1, 88))
    clock.run(60, utilisation(91, 95, 90, 88))
    assert open_incident("imbalance") is None
    assert Incident.objects.get().resolved_at is not None


def test_thresholds_are_editable(clock, engine, rule_settings):
    rule_settings.imbalance_busy_percent = 95
    rule_settings.save()
    clock.run(300, utilisation(91, 95, 1, 88))
    assert open_incident("imbalance") is None
