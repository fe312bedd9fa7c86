"""The engine page (issues 15 and 17): one engine's state history, restarts with reasons and durations, running
vs desired configuration, audit trail, log tail and actions; login and permissions; no log can break it."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from glmadmin import audit
from inference import supervisor
from inference.models import Engine, EngineEvent
from inference.models import EngineState as S

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine():
    return Engine.objects.create(name="glm", port=8200, model="/models/glm", served_model_name="glm-chat",
                                 state=S.READY, state_reason="ready; one-token probe 9 ms", pid=4242,
                                 running_config={"port": 8200, "max_model_len": 4096, "env": {}}, restarts=1)


def events(engine, *steps):
    start = timezone.now() - timedelta(hours=1)
    for seconds, state, previous, reason in steps:
        EngineEvent.objects.create(engine=engine, at=start + timedelta(seconds=seconds), state=state,
                                   previous=previous, reason=reason, pid=4242)


def user_with(django_user_model, name, *perms, staff=False):
    user = django_user_model.objects.create_user(name, password="pw-12345678", is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    client = Client()
    client.force_login(user)
    return client


def test_the_page_shows_history_restarts_configuration_trail_and_actions(admin_client, admin_user, engine):
    events(engine, (0, S.STARTING, S.STOPPED, "starting"), (40, S.READY, S.STARTING, "ready; one-token probe 9 ms"),
           (100, S.DRAINING, S.READY, "restart requested"), (103, S.STOPPED, S.DRAINING, "stopped"),
           (104, S.STARTING, S.STOPPED, "starting"), (151.5, S.READY, S.STARTING, "ready; one-token probe 8 ms"))
    Engine.objects.filter(pk=engine.pk).update(
        max_model_len=8192, env={"HF_TOKEN": "hf_abcdefghijklmnop123456"},
        served_model_name="Qwen2.5-72B-Instruct-AWQ-int4",
        extra_args=["--api-key", "sk-topsecret-123456789", "--hf-token=hf_zyxwvutsrqponm987654", "--seed", "1"])
    audit.record(admin_user, engine, "Changed max_model_len 4096 → 8192.")
    html = admin_client.get(f"/engines/{engine.pk}/").content.decode()
    assert "<h1>glm</h1>" in html
    assert "restart requested · ready after 51.5 s" in html  # the restart, its reason and its duration
    assert "Draining</span>" in html and "stopped" in html  # the state history
    assert "Restart to apply: Max model len 4096 → 8192" in html.replace("max model len", "Max model len")
    assert html.count("data-differs") == 2  # max_model_len and env differ from what runs
    assert "hf_abcdefghijklmnop123456" not in html and "(changed)" in html  # secrets stay hidden
    assert "sk-topsecret" not in html and "hf_zyxwvutsrqponm987654" not in html and "--hf-token=(changed)" in html
    assert "<code>Qwen2.5-72B-Instruct-AWQ-int4</code>" in html  # a long name is no secret
    assert 'seed&quot;, &quot;1&quot;' in html
    assert "Changed max_model_len 4096 → 8192." in html and "admin</strong>" in html  # the audit trail
    assert f'action="/engines/{engine.pk}/restart/"' in html and 'name="csrfmiddlewaretoken"' in html
    assert "data-confirm=" in html


def test_the_dashboard_links_each_engine_to_its_page(admin_client, engine):
    assert f'href="/engines/{engine.pk}/"' in admin_client.get("/").content.decode()


def test_an_action_from_the_engine_page_comes_back_to_it(admin_client, engine):
    Engine.objects.filter(pk=engine.pk).update(enabled=False)
    page = f"/engines/{engine.pk}/"
    response = admin_client.post(f"/engines/{engine.pk}/start/", {"next": page})
    assert response.status_code == 302 and response["Location"] == page
    # Anywhere else is not followed: the dashboard, as before.
    response = admin_client.post(f"/engines/{engine.pk}/start/", {"next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_login_permissions_and_a_missing_engine(client, django_user_model, engine):
    page = f"/engines/{engine.pk}/"
    response = client.get(page)
    assert response.status_code == 302 and "login" in response["Location"]
    viewer = user_with(django_user_model, "viewer")
    html = viewer.get(page).content.decode()
    assert "<h1>glm</h1>" in html
    assert f"/engines/{engine.pk}/stop/" not in html and f"/engines/{engine.pk}/restart/" not in html  # no actions
    assert "The log is shown to those who may view engines" in html
    assert viewer.get(f"/engines/{engine.pk}/log/").status_code == 403
    assert viewer.post(f"/engines/{engine.pk}/stop/").status_code == 403
    staff = user_with(django_user_model, "staff", "view_engine", "change_engine", staff=True)
    html = staff.get(page).content.decode()
    assert f'action="/engines/{engine.pk}/stop/"' in html and "data-log-url" in html
    assert staff.get("/engines/99999/").status_code == 404
    assert staff.get("/engines/99999/log/").status_code == 404


def test_a_log_with_nasty_bytes_renders_bounded_and_escaped(admin_client, engine, settings):
    path = supervisor.log_file(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    nasty = (b"INFO ok line\n"
             b"bad utf-8 \xff\xfe\xc3( here\n"
             b"\x1b[32mgreen\x1b[0m and a NUL \x00 and a bell \x07\n"
             b"<script>alert(1)</script> & </pre>\n"
             b"progress 10%\rprogress 50%\rprogress 100%\n"
             + b"x" * 300_000 + b"\n"
             + b"".join(b"line %d\n" % i for i in range(1000))
             + b"last line without newline \xe2\x82")
    path.write_bytes(b"older " * 100_000 + b"\n" + nasty)
    response = admin_client.get(f"/engines/{engine.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    log = html.split('data-log tabindex="0">', 1)[1].split("</pre>", 1)[0]
    lines = log.splitlines()
    assert len(lines) == 200  # bounded: the last 200 lines
    assert lines[0] == "line 801" and lines[-1] == "last line without newline \ufffd"
    data = admin_client.get(f"/engines/{engine.pk}/log/").json()
    assert data["lines"] == [line.replace("&lt;", "<") for line in lines] and data["state"] == "ready"

    path.write_bytes(nasty.split(b"x" * 300_000)[0] + b"x" * 50_000 + b"\n")
    html = admin_client.get(f"/engines/{engine.pk}/").content.decode()
    log = html.split('data-log tabindex="0">', 1)[1].split("</pre>", 1)[0]
    assert "<script>" not in log and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;/pre&gt;" in log
    assert "bad utf-8 \ufffd\ufffd\ufffd( here" in log
    assert "green and a NUL \ufffd and a bell \ufffd" in log  # colours dropped, controls made visible
    assert "\x00" not in html and "\x1b" not in html
    assert "progress 100%" in log and "progress 10%" not in log
    assert "x" * 2000 + "… (48,000 more characters)" in log

    path.write_bytes(b"\xff" * 1_000_000)  # one line of megabytes, no newline: its end is shown, cut
    log = admin_client.get(f"/engines/{engine.pk}/log/").json()["lines"]
    assert log == ["\ufffd" * 2000 + "… (63,536 more characters)"]


def test_soft_restarts_and_one_under_way_are_listed(admin_client, engine):
    events(engine, (0, S.STARTING, S.STOPPED, "starting"), (40, S.READY, S.STARTING, "ready; one-token probe 9 ms"),
           (100, S.SOFT_RESTART, S.READY, "soft restart: draining"), (104.9, S.READY, S.SOFT_RESTART, "soft restart"),
           (200, S.DRAINING, S.READY, "disabled"), (203, S.STOPPED, S.DRAINING, "stopped"),
           (300, S.STARTING, S.STOPPED, "starting"), (340, S.READY, S.STARTING, "ready; one-token probe 9 ms"),
           (400, S.BACKOFF, S.READY, "process 4242 exited with status 1; retrying in 5 s"))
    html = admin_client.get(f"/engines/{engine.pk}/").content.decode()
    restarts = html.split('id="engine-restarts"', 1)[1].split("</section>", 1)[0]
    assert "process 4242 exited with status 1; retrying in 5 s · <strong>not ready since</strong>" in restarts
    assert "soft restart: draining · ready after 4.9 s" in restarts
    assert "disabled" not in restarts  # an operator's stop and start is no restart
    assert restarts.index("not ready since") < restarts.index("ready after 4.9 s")  # newest first


def test_the_engine_metrics_charts_come_from_the_telemetry_charts(admin_client, engine):
    from monitoring.models import EngineSample
    from monitoring.telemetry import charts

    html = admin_client.get(f"/engines/{engine.pk}/").content.decode()
    assert "No samples yet" in html
    other = Engine.objects.create(name="other", port=8201, model="/m", served_model_name="other")
    now = timezone.now()
    for i, pk in enumerate((engine.pk, other.pk)):
        EngineSample.objects.create(at=now - timedelta(minutes=5), engine_id=pk, kv_cache_usage=40.0 + i,
                                    ttft_p95=0.2, generation_tokens_per_s=150.0)
    charts.refresh(now)
    html = admin_client.get(f"/engines/{engine.pk}/").content.decode()
    kv = html.split('data-chart="kv_cache-hour"', 1)[1].split("</figure>", 1)[0]
    assert "<path" in kv and "<title>glm</title>" in kv and "other" not in kv  # only this engine's line
    assert "glm: 40 %" in kv  # its latest value, as the dashboard writes it


def test_an_engine_of_another_host_says_where_its_log_is(admin_client, engine):
    Engine.objects.filter(pk=engine.pk).update(host="gpu-box-2")
    data = admin_client.get(f"/engines/{engine.pk}/log/").json()
    assert data["lines"] == [] and "runs on host gpu-box-2" in data["note"]
    assert "runs on host gpu-box-2: its log is there" in admin_client.get(f"/engines/{engine.pk}/").content.decode()
