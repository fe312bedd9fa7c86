"""An edit never applies half (issue 15).

A port changed in the admin sent the gateway to the new port at once while the process still listened on the
old one: every request got 503 while everything said Ready. Now the supervisor records what each process was
started with; routing, probes and drains go where the process listens, and the edit shows as "restart to
apply" until a restart applies it (test_pool.py does that restart with a real engine). Ports are checked at
save: glmadmin's own web port and a port something already listens on are refused.
"""

import socket

import pytest
from django.core.management import call_command
from django.db.models.signals import pre_save
from django.template import Context, Template

from glmadmin.lib import processes
from inference import supervisor
from inference.gateway import routing
from inference.models import Engine
from inference.models import EngineState as S
from tests.inference.engines.test_admin import ADD_URL, errors, form
from tests.inference.engines.test_engine_environment import fake_runtime  # noqa: F401 - a fixture
from tests.support.processes import free_port


@pytest.fixture
def listening():
    """Something else listening on a port of this host."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.mark.django_db
def test_glmadmins_own_web_port_is_refused(admin_client, settings):
    settings.WEB_PORT = 8123
    response = admin_client.post(ADD_URL, form(port="8123"))
    assert "Port 8123 is glmadmin's own web port." in errors(response)["port"]
    # Another host's ports are its own.
    assert admin_client.post(ADD_URL, form(port="8123", host="gpu2")).status_code == 302


@pytest.mark.django_db
def test_a_port_something_listens_on_is_refused(admin_client, listening):
    response = admin_client.post(ADD_URL, form(port=str(listening)))
    assert f"Port {listening} is already in use on this host by pid" in errors(response)["port"]
    # Listening on every address takes the loopback port too.
    response = admin_client.post(ADD_URL, form(port=str(listening), listen_address="0.0.0.0"))
    assert "already in use on this host" in errors(response)["port"]
    assert not Engine.objects.exists()


@pytest.mark.django_db
def test_an_unchanged_port_is_not_checked_again(admin_client, listening):
    # The listener is the engine itself: editing another field of it must not be refused.
    engine = Engine.objects.create(name="glm", port=listening, model="/models/glm-4.7-flash",
                                   served_model_name="glm-4.7-flash", gpu_ids="0,1,2,3", tensor_parallel_size=4)
    response = admin_client.post(f"/admin/inference/engine/{engine.pk}/change/",
                                 form(port=str(listening), max_num_seqs="8"))
    assert response.status_code == 302, errors(response)


@pytest.fixture
def running(transactional_db, fake_runtime):  # noqa: F811 - the fixture imported above
    """An engine the real supervisor started (a stand-in process): what it started with is recorded."""
    engine = Engine.objects.create(name="edit", port=free_port(), model="/models/glm-4.7-flash",
                                   served_model_name="glm-4.7-flash", gpu_ids="0,1,2,3", tensor_parallel_size=4,
                                   gpu_memory_utilization=0.85)  # as form() posts it
    supervisor.reconcile(engine.pk)
    engine.refresh_from_db()
    assert engine.state == S.STARTING and engine.running_config["port"] == engine.port
    yield engine
    processes.kill_group(engine.pid)


def test_a_port_edit_waits_for_the_restart(running, admin_client, capsys):
    old, new = running.port, free_port()
    response = admin_client.post(f"/admin/inference/engine/{running.pk}/change/", form(name="edit", port=str(new)),
                                 follow=True)
    assert f"runs as it was started until it restarts (Save and restart, or Restart): port {old} → {new}.</li>" in (
        response.content.decode())
    engine = Engine.objects.get(pk=running.pk)
    assert engine.port == new and engine.pending_restart() == [f"port {old} → {new}"]
    # Routes, probes and drains go where the process listens.
    assert engine.base_url == f"http://127.0.0.1:{old}"
    assert routing.table()["edit"]["url"] == f"http://127.0.0.1:{old}"
    # Said where operators look: engine_status, the engines panel, the admin.
    call_command("engine_status")
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[4] == str(old)
    assert f"edit: restart to apply: port {old} → {new}" in out
    panel = Template("{% load engine_tags %}{% engines_panel %}").render(Context({}))
    assert f"Restart to apply: port {old} → {new}" in panel
    page = admin_client.get(f"/admin/inference/engine/{running.pk}/change/").content.decode()
    assert f"port {old} → {new}" in page


def test_a_stopped_engine_has_nothing_to_apply(transactional_db):
    engine = Engine.objects.create(name="idle", port=free_port(), model="/m", served_model_name="m",
                                   running_config={"port": 1})
    assert engine.pending_restart() == [] and engine.base_url == f"http://127.0.0.1:{engine.port}"


def test_an_admin_save_does_not_write_back_what_the_supervisor_changed_meanwhile(running, admin_client):
    def supervisor_steps_meanwhile(sender, instance, **kwargs):
        # Between the admin reading the row and saving it, the supervisor records the engine ready.
        Engine.objects.filter(pk=instance.pk).update(state=S.READY, state_reason="ready; one-token probe 9 ms")

    pre_save.connect(supervisor_steps_meanwhile, sender=Engine)
    try:
        response = admin_client.post(f"/admin/inference/engine/{running.pk}/change/",
                                     form(name="edit", port=str(running.port), max_num_seqs="8"))
    finally:
        pre_save.disconnect(supervisor_steps_meanwhile, sender=Engine)
    assert response.status_code == 302, errors(response)
    engine = Engine.objects.get(pk=running.pk)
    assert (engine.state, engine.max_num_seqs, engine.pid) == (S.READY, 8, running.pid)


def test_a_served_name_edit_waits_for_the_restart_too(running, admin_client):
    # The process still answers to the name it was started with: the gateway routes that name and the
    # liveness probe asks for it (asking for the new one would fail three probes and restart the engine).
    response = admin_client.post(f"/admin/inference/engine/{running.pk}/change/",
                                 form(name="edit", port=str(running.port), served_model_name="glm-renamed"))
    assert response.status_code == 302, errors(response)
    engine = Engine.objects.get(pk=running.pk)
    assert engine.served_model_name == "glm-renamed"
    assert engine.pending_restart() == ["served model name glm-4.7-flash → glm-renamed"]
    assert routing.table()["edit"]["model"] == "glm-4.7-flash"
    assert engine.running("served_model_name") == "glm-4.7-flash"
