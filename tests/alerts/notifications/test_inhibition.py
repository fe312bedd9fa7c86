"""Inhibition: a red disk on a host holds back the notifications of its echoes on that host (engine failures,
telemetry such as time to first token); they are recorded and shown, and told once if still open after the disk
is no longer red. Other hosts are unaffected. Through a real SMTP server and a real webhook receiver."""

from datetime import timedelta

import pytest
from django.test import Client

from alerts.models import Incident, IncidentEvent
from alerts.tasks import release_silences
from inference import engine_incidents
from tests.support import notify as notify_support
from tests.support import telemetry_rules as rules_support
from tests.support.notify import mail_channel, reading, webhook, work
from tests.support.telemetry_rules import cycle, open_incident, ready_engine
from tests.support.telemetry_rules import reading as engine_reading

receiver, smtp = notify_support.receiver, notify_support.smtp  # the real receivers, as fixtures of this module
clock = rules_support.clock  # the sampler's pace, on time-machine

pytestmark = pytest.mark.django_db
DISK_A = "Disk data (/data-a)"


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a step and then its after-commit hooks, as a real commit would (the test itself is one transaction)."""

    def run(step, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return step(*args, **kwargs)

    return run


@pytest.fixture
def hosts(settings, clock):
    """This process samples and checks host A (gpu-a); engine glm runs there, glm-b on host B (gpu-b)."""
    settings.GLMADMIN_HOST_NAME = "gpu-a"
    engine_a = ready_engine("glm", port=8165)
    engine_b = ready_engine("glm-b", port=8166)
    engine_b.host = "gpu-b"
    engine_b.save(update_fields=["host"])
    return engine_a, engine_b


def disk_a(percent):
    return reading(percent, path="/data-a", host="gpu-a")


def slow_first_tokens(engine):
    return lambda: cycle(engines=[engine_reading(engine, ttft_p95=3.0)])


def told(hook) -> list[tuple[str, str]]:
    return [(r.body["reason"], r.body["incident"]["title"]) for r in hook.requests]


def test_a_red_disk_on_host_a_is_sent_and_its_echoes_are_not_while_host_b_is_unaffected(
        committed, hosts, clock, receiver, smtp, admin_client):
    engine_a, engine_b = hosts
    webhook(receiver.url)  # every level, each change at once
    mail_channel(levels=["yellow", "orange", "red"], group_wait_seconds=30)  # grouped, as a channel made in the admin

    committed(disk_a, 98)
    committed(engine_incidents.open_failed, engine_a, "3 failed probes in a row")
    committed(clock.run, 300, slow_first_tokens(engine_a))  # the real TTFT rule, 5 min over 2 s on host A
    committed(engine_incidents.open_failed, engine_b, "3 failed probes in a row")
    work()
    clock.skip(30)  # the mail channel's group for host B closes
    work()

    assert told(receiver) == [("opened", DISK_A), ("opened", "Engine glm-b failed")]
    assert [m["Subject"] for _, m in smtp.messages] == [
        f"[RED] {DISK_A}: opened", "[ORANGE] Engine glm-b failed: opened"]

    # The echoes are recorded, each transition marked with its cause.
    disk = Incident.objects.get(title=DISK_A)
    ttft = open_incident("ttft")
    engine = Incident.objects.get(source="engine:gpu-a:glm")
    assert (ttft.host, ttft.kind, engine.host) == ("gpu-a", "telemetry", "gpu-a")
    for echo in (ttft, engine):
        assert echo.is_open and echo.events.get(kind="opened").inhibited_by == disk
    assert Incident.objects.get(source="engine:gpu-b:glm-b").events.get(kind="opened").inhibited_by is None

    # ...and shown as inhibited, on the dashboard, in the incident list and on /metrics.
    page = admin_client.get("/").content.decode()
    assert page.count(f"inhibited by {DISK_A}") == page.count("data-inhibited=") == 2  # the echoes' rows
    assert 'data-inhibited-incidents="2"' in page  # and the notifications card
    listing = admin_client.get("/admin/alerts/incident/").content.decode()
    assert listing.count(f"inhibited by {DISK_A}") == 2
    metrics = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    assert "glmadmin_inhibited_incidents 2.0" in metrics


def test_an_echo_still_open_when_the_disk_resolves_is_told_once(committed, hosts, clock, receiver):
    engine_a, _ = hosts
    webhook(receiver.url)
    committed(disk_a, 98)
    committed(engine_incidents.open_failed, engine_a, "3 failed probes in a row")
    other = ready_engine("glm-2", port=8167)
    committed(engine_incidents.open_failed, other, "exited")
    committed(engine_incidents.resolve, other)  # over while the disk was red: nobody needs to hear of it
    clock.skip(600)
    committed(release_silences.apply)  # the beat: the disk is still red, nothing is released
    work()
    assert told(receiver) == [("opened", DISK_A)]

    committed(disk_a, 50)  # resolved: the echo still open is released with it
    committed(release_silences.apply)  # a later beat finds nothing more
    work()
    assert told(receiver) == [("opened", DISK_A), ("resolved", DISK_A), ("opened", "Engine glm failed")]
    released = receiver.requests[-1].body
    assert released["after_inhibition"] is True
    assert f"held back while {DISK_A} was red on gpu-a" in released["text"]
    assert not IncidentEvent.objects.filter(inhibited_by__isnull=False, released=False).exists()

    # Told once: its later changes are sent as usual, the way a released silence's are.
    committed(engine_incidents.resolve, engine_a)
    work()
    assert told(receiver)[-1] == ("resolved", "Engine glm failed") and len(receiver.requests) == 4


def test_a_disk_down_from_red_to_orange_no_longer_inhibits(committed, hosts, receiver):
    engine_a, _ = hosts
    webhook(receiver.url)
    committed(disk_a, 98)
    committed(engine_incidents.open_failed, engine_a, "3 failed probes in a row")
    committed(disk_a, 93)  # orange: cleanup freed some space, the engine is still down
    work()
    assert told(receiver) == [("opened", DISK_A), ("deescalated", DISK_A), ("opened", "Engine glm failed")]


def test_a_simulated_red_disk_inhibits_nothing(committed, hosts, receiver):
    from django.core.management import call_command

    engine_a, _ = hosts
    webhook(receiver.url)
    committed(call_command, "test_alert", "--level", "red")
    committed(engine_incidents.open_failed, engine_a, "3 failed probes in a row")
    work()
    assert told(receiver) == [("opened", "Simulated disk alert"), ("opened", "Engine glm failed")]


def test_a_grouped_channel_leaves_out_an_echo_whose_disk_turned_red_while_the_group_waited(
        committed, hosts, clock, receiver):
    engine_a, _ = hosts
    webhook(receiver.url, group_wait_seconds=30)
    committed(engine_incidents.open_failed, engine_a, "3 failed probes in a row")  # first: the probe noticed it
    clock.skip(10)
    committed(disk_a, 98)  # then the disk check: the cause
    clock.skip(20)
    work()
    assert told(receiver) == [("opened", DISK_A)]  # the group's message is the disk's alone
    assert Incident.objects.get(source="engine:gpu-a:glm").events.get().inhibited_by.title == DISK_A

    clock.skip(timedelta(minutes=10).total_seconds())
    committed(disk_a, 50)
    clock.skip(30)  # the released engine is news: it waits only the group wait, and takes the disk's resolve along
    work()
    (grouped,) = receiver.requests[1:]
    assert [(i["reason"], i["incident"]["title"]) for i in grouped.body["items"]] == [
        ("resolved", DISK_A), ("opened", "Engine glm failed")]


def test_a_group_left_with_only_echoes_is_not_sent_nor_counts_as_told(committed, hosts, clock, receiver):
    engine_a, _ = hosts
    webhook(receiver.url, name="engines only", incident_kinds=["engine"], group_wait_seconds=30)
    committed(engine_incidents.open_failed, engine_a, "3 failed probes in a row")
    clock.skip(10)
    committed(disk_a, 98)  # not for this channel, but the cause of the engine's failure
    clock.skip(20)
    assert work() == ["cancelled: every change in the group is inhibited"]
    committed(engine_incidents.resolve, engine_a)  # the channel never heard of it: no "resolved" either
    clock.skip(30)
    work()
    assert receiver.requests == []
