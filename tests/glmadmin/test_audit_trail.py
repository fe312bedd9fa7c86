"""The audit trail (issue 15): every change to engines, thresholds, policies and keys says who, when and what
changed, from what to what, without secrets; the dashboard's engine buttons leave an entry too; the trail is a
read-only admin page for staff and a short list on each engine of the dashboard.
"""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db import connection
from django.template import Context, Template
from django.test.utils import CaptureQueriesContext

from alerts.models import NotificationChannel
from glmadmin import audit
from inference.models import ApiKey, Engine
from tests.inference.engines.test_admin import form

TRAIL_URL = "/admin/admin/logentry/"


@pytest.fixture
def engine(db):
    # The values form() posts, so that a post of form(...) changes only what it names.
    return Engine.objects.create(name="glm", host="local", port=8001, model="/models/glm-4.7-flash",
                                 served_model_name="glm-4.7-flash", gpu_ids="0,1,2,3", tensor_parallel_size=4,
                                 gpu_memory_utilization=0.9)


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_user("operator", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["change_engine", "view_engine", "change_apikey", "view_apikey"]))
    return user


def entries_for(obj):
    return list(LogEntry.objects.filter(object_id=str(obj.pk), content_type__model=obj._meta.model_name)
                .order_by("-action_time", "-pk"))


def test_an_admin_edit_says_who_changed_what_from_what_to_what(client, operator, engine):
    client.force_login(operator)
    response = client.post(f"/admin/inference/engine/{engine.pk}/change/",
                           form(gpu_memory_utilization="0.8", max_num_seqs="16"))
    assert response.status_code == 302
    [entry] = entries_for(engine)
    assert entry.user == operator
    message = entry.get_change_message()
    assert "gpu_memory_utilization 0.9 → 0.8" in message
    assert "max_num_seqs – → 16" in message
    # The object's History page shows the same words.
    history = client.get(f"/admin/inference/engine/{engine.pk}/history/").content.decode()
    assert "gpu_memory_utilization 0.9 → 0.8" in history


def test_an_api_key_edit_never_shows_its_hash(admin_client, django_user_model):
    key = ApiKey(name="batch")
    plain = key.new_secret()
    key.save()
    response = admin_client.post(f"/admin/inference/apikey/{key.pk}/change/", {
        "name": "batch jobs", "owner": "", "requests_per_minute": "7", "max_concurrent": "2",
        "tokens_per_minute": "1000"})
    assert response.status_code == 302, response.content.decode()[:2000]
    [entry] = entries_for(key)
    message = entry.get_change_message()
    assert 'name "batch" → "batch jobs"' in message and "requests_per_minute" in message
    assert key.key_hash not in entry.change_message and plain not in entry.change_message
    # The bulk revoke, which writes no LogEntry of Django's own, is in the trail too.
    admin_client.post("/admin/inference/apikey/", {"action": "revoke_selected", "_selected_action": [key.pk]})
    assert entries_for(key)[0].get_change_message() == "Action: Revoke selected API keys."


def test_a_channel_edit_never_shows_its_url_or_secret(admin_client):
    channel = NotificationChannel.objects.create(name="team", kind="webhook", url="https://93.184.215.14/hook/OLD",
                                                 address_policy="public", levels=["orange", "red"],
                                                 secret="old-signing-secret")
    response = admin_client.post(f"/admin/alerts/notificationchannel/{channel.pk}/change/", {
        "name": "team", "kind": "webhook", "enabled": "on", "url": "https://93.184.215.14/hook/NEW",
        "secret": "new-signing-secret", "address_policy": "public", "levels": ["orange", "red"],
        "repeat_minutes": "60", "escalate_after_minutes": "0", "group_wait_seconds": "30",
        "group_interval_minutes": "5"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    [entry] = entries_for(channel)
    message = entry.get_change_message()
    assert "url (changed)" in message and "secret (changed)" in message and "repeat_minutes" in message
    for secret in ("OLD", "NEW", "old-signing-secret", "new-signing-secret"):
        assert secret not in entry.change_message


def test_engine_environment_values_that_look_secret_are_hidden():
    lines = audit.describe_change("env", {"VLLM_LOGGING_LEVEL": "INFO", "HF_TOKEN": "hf_old"},
                                  {"VLLM_LOGGING_LEVEL": "DEBUG", "HF_TOKEN": "hf_new",
                                   "VLLM_X": "abcdefghij0123456789xyz"})
    assert lines == ["env[HF_TOKEN] (changed)", 'env[VLLM_LOGGING_LEVEL] "INFO" → "DEBUG"', "env[VLLM_X] (changed)"]


def test_a_dashboard_restart_leaves_an_entry(client, operator, engine):
    client.force_login(operator)
    assert client.post(f"/engines/{engine.pk}/restart/").status_code == 302
    [entry] = entries_for(engine)
    assert (entry.user, entry.get_change_message()) == (operator, "Restart requested from the dashboard.")


def test_the_trail_page_is_read_only_and_for_staff(client, admin_client, operator, django_user_model, engine):
    client.force_login(operator)
    client.post(f"/admin/inference/engine/{engine.pk}/change/", form(gpu_memory_utilization="0.8"))
    entry = LogEntry.objects.get()
    page = client.get(TRAIL_URL)
    assert page.status_code == 200
    assert "gpu_memory_utilization 0.9 → 0.8" in page.content.decode()
    filtered = client.get(TRAIL_URL, {"user__id__exact": operator.pk, "content_type__id__exact":
                                      entry.content_type_id})
    assert "gpu_memory_utilization 0.9 → 0.8" in filtered.content.decode()
    assert client.get(f"{TRAIL_URL}add/").status_code == 403
    assert client.post(f"{TRAIL_URL}{entry.pk}/change/", {"change_message": "nothing"}).status_code == 403
    assert client.post(f"{TRAIL_URL}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert LogEntry.objects.get().change_message == entry.change_message
    # Not staff: no admin at all.
    viewer = django_user_model.objects.create_user("viewer", password="x")
    client.force_login(viewer)
    response = client.get(TRAIL_URL)
    assert response.status_code == 302 and "login" in response["Location"]


def test_staff_see_only_the_trail_of_what_they_may_view(client, admin_client, operator, django_user_model):
    # A superuser's change to a user is not shown to staff who may not view users.
    other = django_user_model.objects.create_user("someone", password="x")
    audit.record(django_user_model.objects.get(username="admin"), other, "Changed password.")
    client.force_login(operator)
    assert "someone" not in client.get(TRAIL_URL).content.decode()
    assert "someone" in admin_client.get(TRAIL_URL).content.decode()


def test_the_dashboard_shows_the_last_changes_of_each_engine(client, operator, engine):
    other = Engine.objects.create(name="small", port=8002, model="/m", served_model_name="small")
    client.force_login(operator)
    client.post(f"/admin/inference/engine/{engine.pk}/change/", form(gpu_memory_utilization="0.8"))
    for _ in range(6):
        client.post(f"/engines/{other.pk}/stop/")
    with CaptureQueriesContext(connection) as queries:
        panel = Template("{% load engine_tags %}{% engines_panel %}").render(Context({}))
    assert sum("django_admin_log" in q["sql"] for q in queries.captured_queries) == 1  # one for every engine
    glm, small = panel.split('data-engine="small"')[0], panel.split('data-engine="small"')[1]
    assert "gpu_memory_utilization 0.9 → 0.8" in glm and "operator" in glm
    assert small.count("Stop requested from the dashboard.") == 5  # the last five only
    assert "gpu_memory_utilization" not in small
