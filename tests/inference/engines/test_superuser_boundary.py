"""Who may change what of an engine in the admin: staff tune it; what can run code or reach outside is a superuser's.

Issue 15: anyone with inference.change_engine could set LD_PRELOAD, PYTHONPATH or --trust-remote-code and so run
code on the host as glmadmin.
"""

import pytest
from django.contrib.auth.models import Permission

from inference.models import Engine
from tests.inference.engines.test_admin import ADD_URL, errors, form

DANGEROUS = {"model": "/tmp/evil-model", "env": '{"VLLM_LOGGING_LEVEL": "DEBUG"}', "listen_address": "0.0.0.0",
             "host": "gpu2"}


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_user("operator", password="x", is_staff=True)
    # Every engine permission Django has: what is still refused is the superuser's alone.
    user.user_permissions.add(*Permission.objects.filter(codename__in=["add_engine", "change_engine", "view_engine"]))
    client.force_login(user)
    return client


@pytest.fixture
def engine(db):
    # The values form() posts, so that a post of form() changes nothing that staff may not change.
    return Engine.objects.create(name="glm", host="local", port=8001, model="/models/glm-4.7-flash",
                                 served_model_name="glm-4.7-flash", gpu_ids="0,1,2,3", tensor_parallel_size=4,
                                 gpu_memory_utilization=0.85)


def change_url(engine):
    return f"/admin/inference/engine/{engine.pk}/change/"


def test_staff_cannot_add_an_engine(staff_client):
    assert staff_client.get(ADD_URL).status_code == 403
    assert staff_client.post(ADD_URL, form()).status_code == 403
    assert not Engine.objects.exists()


def test_staff_sees_the_dangerous_fields_read_only_with_the_reason(staff_client, admin_client, engine):
    page = staff_client.get(change_url(engine)).content.decode()
    for field in DANGEROUS:
        assert f'name="{field}"' not in page, field
    assert "/models/glm-4.7-flash" in page  # shown, as text
    assert "Only a superuser can change these" in page
    superuser_page = admin_client.get(change_url(engine)).content.decode()
    assert all(f'name="{field}"' in superuser_page for field in DANGEROUS)


@pytest.mark.parametrize(("field", "value"), DANGEROUS.items())
def test_staff_change_of_a_dangerous_field_is_refused(staff_client, engine, field, value):
    response = staff_client.post(change_url(engine), form(**{field: value}))
    assert response.status_code == 200
    assert "only a superuser can change this" in errors(response)["__all__"]
    engine.refresh_from_db()
    assert (engine.model, engine.env, engine.listen_address, engine.host) == (
        "/models/glm-4.7-flash", {}, "127.0.0.1", "local")


def test_staff_tunes_the_engine(staff_client, engine):
    response = staff_client.post(change_url(engine), form(
        gpu_memory_utilization="0.7", max_num_seqs="16", block_size="32", max_model_len="8192", gpu_ids="0,1",
        tensor_parallel_size="2", daily_restart_at="03:30", served_model_name="glm-flash",
        extra_args='["--seed", "7", "--max_num_batched_tokens=8192", "--enable-prefix-caching"]'))
    assert response.status_code == 302, errors(response)
    engine.refresh_from_db()
    assert (engine.gpu_memory_utilization, engine.max_num_seqs, engine.block_size, engine.max_model_len,
            engine.tensor_parallel_size, str(engine.daily_restart_at)) == (0.7, 16, 32, 8192, 2, "03:30:00")
    assert engine.extra_args == ["--seed", "7", "--max_num_batched_tokens=8192", "--enable-prefix-caching"]


@pytest.mark.parametrize(("args", "named"), [
    (["--trust-remote-code"], "--trust-remote-code"),
    (["--trust_remote_code"], "--trust-remote-code"),
    (["--trust-remote"], "--trust-remote-code"),  # argparse takes an unambiguous abbreviation
    (["--tool-parser-plugin", "/tmp/parser.py"], "--tool-parser-plugin"),
    (["--middleware", "evil.Middleware"], "--middleware"),
    (["--allowed-local-media-path", "/"], "--allowed-local-media-path"),
    (["--chat-template", "/etc/shadow"], "--chat-template"),
    (["--logits-processors", "evil.Processor"], "--logits-processors"),
    (["--worker-cls", "evil.Worker"], "--worker-cls"),
    (["--log-config-file", "/tmp/logging.json"], "--log-config-file"),
    (["--kv-transfer-config.kv_connector_module_path", "evil"], "--kv-transfer-config"),
    (["-cc.mode=3"], "-cc (that is --compilation-config)"),
    (["--tokenizer", "someone/remote-tokenizer"], "--tokenizer"),
])
def test_staff_flag_that_needs_a_superuser_is_refused(staff_client, engine, args, named):
    import json

    response = staff_client.post(change_url(engine), form(extra_args=json.dumps(args)))
    assert response.status_code == 200
    assert f"{named} needs a superuser" in errors(response)["extra_args"]
    engine.refresh_from_db()
    assert engine.extra_args == []


def test_staff_keeps_and_removes_what_a_superuser_set_but_does_not_change_it(staff_client, engine):
    Engine.objects.filter(pk=engine.pk).update(extra_args=["--chat-template", "/srv/templates/glm.jinja"])
    keep = form(extra_args='["--chat-template", "/srv/templates/glm.jinja", "--seed", "3"]')
    assert staff_client.post(change_url(engine), keep).status_code == 302
    other = form(extra_args='["--chat-template", "/etc/shadow", "--seed", "3"]')
    response = staff_client.post(change_url(engine), other)
    assert "--chat-template needs a superuser" in errors(response)["extra_args"]
    assert staff_client.post(change_url(engine), form(extra_args='["--seed", "3"]')).status_code == 302
    engine.refresh_from_db()
    assert engine.extra_args == ["--seed", "3"]


def test_superuser_sets_what_staff_may_not(admin_client, engine):
    response = admin_client.post(change_url(engine), form(
        **{**DANGEROUS, "env": '{"VLLM_LOGGING_LEVEL": "DEBUG", "NCCL_DEBUG": "INFO", "HF_HUB_OFFLINE": "1"}'},
        extra_args='["--trust-remote-code", "--chat-template", "/srv/t.jinja", "--middleware", "ok.Middleware"]'))
    assert response.status_code == 302, errors(response)
    engine.refresh_from_db()
    assert (engine.model, engine.listen_address, engine.host) == ("/tmp/evil-model", "0.0.0.0", "gpu2")
    assert engine.env["NCCL_DEBUG"] == "INFO" and "--trust-remote-code" in engine.extra_args
