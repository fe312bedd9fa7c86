import pytest
from django.core.management import CommandError, call_command

from inference import supervisor
from inference.models import Engine


@pytest.fixture
def engine(db):
    return Engine.objects.create(name="glm", port=8001, model="/m", served_model_name="glm")


@pytest.mark.django_db
def test_commands_need_engines_named_or_all(engine):
    with pytest.raises(CommandError, match="name at least one engine, or use --all"):
        call_command("restart_engine")
    with pytest.raises(CommandError, match="not both"):
        call_command("stop_engine", "glm", "--all")
    with pytest.raises(CommandError, match=r"unknown engine 'gml' \(engines: glm\)"):
        call_command("start_engine", "gml")


@pytest.mark.django_db
def test_all_without_engines_says_how_to_add_one():
    with pytest.raises(CommandError, match="no engines are defined"):
        call_command("restart_engine", "--all")


def test_engine_logs_tail(engine, settings, tmp_path, capsys):
    settings.ENGINE_DIR = tmp_path
    with pytest.raises(CommandError, match="has no log yet"):
        call_command("engine_logs", "glm")
    path = supervisor.log_file(engine)
    path.parent.mkdir(parents=True)
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    call_command("engine_logs", "glm", "-n", "3")
    assert capsys.readouterr().out == "line 97\nline 98\nline 99\n"


def test_engine_logs_of_another_host(engine):
    Engine.objects.filter(pk=engine.pk).update(host="gpu2")
    with pytest.raises(CommandError, match="runs on host gpu2: read its log there"):
        call_command("engine_logs", "glm")


@pytest.mark.django_db
def test_dashboard_engine_actions_need_permission(client, admin_client, django_user_model, engine):
    viewer = django_user_model.objects.create_user("viewer", password="pw-12345678")
    client.force_login(viewer)
    assert client.post(f"/engines/{engine.pk}/stop/").status_code == 403
    assert Engine.objects.get().enabled
    assert admin_client.get(f"/engines/{engine.pk}/stop/").status_code == 405
    response = admin_client.post(f"/engines/{engine.pk}/stop/", follow=True)
    assert "Stop requested for engine glm" in response.content.decode()
    assert not Engine.objects.get().enabled
    assert admin_client.post(f"/engines/{engine.pk}/explode/").status_code == 404
    html = admin_client.get("/").content.decode()
    assert 'data-engine="glm"' in html and "Start" in html
