"""The rules are edited on one admin page, with errors that name the field and the problem."""

import pytest
from django.forms.models import model_to_dict

from monitoring.models import TelemetryRules

URL = "/admin/monitoring/telemetryrules/1/change/"


def form(**overrides):
    data = {k: v for k, v in model_to_dict(TelemetryRules.objects.get(pk=1)).items() if k != "id"}
    data.update(overrides)
    # An unticked checkbox is simply absent from a browser's POST.
    return {k: ("on" if v is True else v) for k, v in data.items() if v is not False and v is not None}


def errors(response):
    return response.context["adminform"].form.errors


@pytest.mark.django_db
def test_the_migration_sets_the_defaults_the_brief_asks_for():
    rules = TelemetryRules.objects.get(pk=1)
    assert (rules.gpu_memory_percent, rules.gpu_memory_seconds, rules.gpu_memory_restart) == (95, 120, True)
    assert (rules.kv_cache_percent, rules.kv_cache_seconds) == (90, 300)
    assert (rules.foreign_gib, rules.imbalance_idle_percent, rules.imbalance_busy_percent) == (2, 5, 50)
    assert (rules.stuck_seconds, rules.stuck_restart, rules.restart_cooldown_minutes) == (60, True, 15)
    assert (rules.ttft_p95_seconds, rules.drift_factor, rules.drift_baseline_minutes, rules.drift_seconds) == (
        2, 2, 60, 600)
    assert (rules.no_data_intervals, rules.metrics_missing_cycles, rules.nvml_cycles) == (3, 3, 3)


@pytest.mark.django_db
def test_the_list_opens_the_one_row_and_saving_applies(admin_client):
    response = admin_client.get("/admin/monitoring/telemetryrules/")
    assert response.status_code == 302 and response["Location"] == URL
    page = admin_client.get(URL).content.decode()
    assert "GPU memory (orange)" in page and "Tensor-parallel imbalance (yellow)" in page
    response = admin_client.post(URL, form(gpu_memory_percent="97.5", stuck_restart=False))
    assert response.status_code == 302, errors(response) if response.status_code == 200 else response
    rules = TelemetryRules.current()
    assert (rules.gpu_memory_percent, rules.stuck_restart, rules.sample_interval) == (97.5, False, 10)
    assert TelemetryRules.objects.count() == 1
    # One row, always there: no second one, and no deleting it.
    assert admin_client.get("/admin/monitoring/telemetryrules/add/").status_code == 403
    assert admin_client.get("/admin/monitoring/telemetryrules/1/delete/").status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "field", "text"),
    [
        ({"imbalance_idle_percent": "60"}, "imbalance_busy_percent", "Busy (50 %) must be above idle (60 %)"),
        ({"drift_factor": "1"}, "drift_factor", "Use a factor above 1 (got 1)"),
        ({"gpu_memory_percent": "101"}, "gpu_memory_percent", "less than or equal to 100"),
        ({"kv_cache_percent": "-1"}, "kv_cache_percent", "greater than or equal to 0"),
        ({"foreign_gib": "0"}, "foreign_gib", "greater than or equal to 0.01"),
        ({"no_data_intervals": "1"}, "no_data_intervals", "greater than or equal to 2"),
        ({"gpu_memory_seconds": "-5"}, "gpu_memory_seconds", "greater than or equal to 0"),
        ({"stuck_seconds": "100000"}, "stuck_seconds", "less than or equal to 86400"),
        ({"restart_cooldown_minutes": "0"}, "restart_cooldown_minutes", "greater than or equal to 1"),
        ({"ttft_p95_seconds": "fast"}, "ttft_p95_seconds", "Enter a number"),
    ],
)
def test_bad_values_name_the_field(admin_client, overrides, field, text):
    response = admin_client.post(URL, form(**overrides))
    assert response.status_code == 200
    assert text in " ".join(errors(response)[field])
    assert TelemetryRules.objects.get(pk=1).gpu_memory_percent == 95


@pytest.mark.django_db
def test_only_staff_with_permission_may_change_the_rules(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="pw-12345678", is_staff=True)
    client.force_login(viewer)
    assert client.get(URL).status_code == 403
    assert client.post(URL, form(gpu_memory_percent="10")).status_code == 403
    assert TelemetryRules.objects.get(pk=1).gpu_memory_percent == 95
    client.logout()
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_the_gpu_memory_threshold_must_stay_above_what_engines_reserve(admin_client):
    from tests.support.telemetry_rules import ready_engine

    engine = ready_engine("glm", gpu_ids="0")
    response = admin_client.post(URL, form(gpu_memory_percent="92"))  # vLLM's default 0.9, plus the 2 points
    assert "Engine glm reserves 90 % of its GPUs (vLLM's default gpu_memory_utilization) for as long as it runs: " \
           "at 92 % its GPU would stay raised. Use a threshold above 92 %" in " ".join(errors(response)[
               "gpu_memory_percent"])
    engine.gpu_memory_utilization = 0.99
    engine.save()
    response = admin_client.post(URL, form(gpu_memory_percent="99.5"))
    assert "(gpu_memory_utilization 0.99) for as long as it runs: at 99.5 % its GPU would stay raised. Lower that " \
           "engine's gpu_memory_utilization." in " ".join(errors(response)["gpu_memory_percent"])
    assert TelemetryRules.objects.get(pk=1).gpu_memory_percent == 95
    # Switched off, or the engine disabled or on the CPU: nothing to keep apart.
    assert admin_client.post(URL, form(gpu_memory_percent="80", gpu_memory_enabled=False)).status_code == 302
    engine.gpu_ids = ""
    engine.save()
    assert admin_client.post(URL, form(gpu_memory_percent="80")).status_code == 302
    assert "keep this above every engine's share" in admin_client.get(URL).content.decode()
