"""Cleanup and log policies are validated in the admin, with messages naming the field."""

import pytest

from monitoring.cleanup.policy import parse_size
from monitoring.models import CleanupPolicy, LogPolicy

ADD_URL = "/admin/monitoring/cleanuppolicy/add/"
LOG_ADD_URL = "/admin/monitoring/logpolicy/add/"


def form(directory, **overrides):
    data = {"name": "hf", "root": str(directory), "enabled": "on", "engine_cache": "on", "max_size": "2G",
            "min_age_hours": "168", "include": "*", "exclude": "", "log_level": "INFO"}
    data.update(overrides)
    return data


def errors(response):
    return response.context["adminform"].form.errors


@pytest.mark.parametrize(("text", "size"), [("2G", 2 * 1024**3), ("500M", 500 * 1024**2), ("800k", 800 * 1024),
                                            ("1.5G", int(1.5 * 1024**3)), ("4096", 4096), ("2GB", 2 * 1024**3)])
def test_sizes_take_units(text, size):
    assert parse_size(text) == size


@pytest.mark.django_db
def test_a_valid_policy_is_saved(admin_client, tmp_path):
    response = admin_client.post(ADD_URL, form(tmp_path, max_size="500M", exclude="*.lock\nkeep/*"))
    assert response.status_code == 302
    assert CleanupPolicy.objects.get(name="hf").max_bytes == 500 * 1024**2


@pytest.mark.django_db
@pytest.mark.parametrize(("overrides", "field", "text"), [
    ({"root": "relative/cache"}, "root", "Use an absolute path"),
    ({"root": "{tmp}/nonexistent/cache"}, "root", "does not exist"),
    ({"root": "/"}, "root", "is outside the directories cleanup may act in"),
    ({"max_size": "2 gallons"}, "max_size", "is not a size"),
    ({"include": "[abc"}, "include", "is not closed"),
    ({"exclude": "../other/*"}, "exclude", "relative to the root"),
    ({"exclude": "/abs/*"}, "exclude", "relative to the root"),
])
def test_bad_values_are_rejected_on_their_field(admin_client, tmp_path, overrides, field, text):
    overrides = {name: value.replace("{tmp}", str(tmp_path)) for name, value in overrides.items()}
    response = admin_client.post(ADD_URL, form(tmp_path, **overrides))
    assert response.status_code == 200
    assert text in " ".join(errors(response)[field])
    assert not CleanupPolicy.objects.filter(name="hf").exists()


@pytest.mark.django_db
def test_a_symlinked_root_is_rejected_with_its_target(admin_client, tmp_path):
    (tmp_path / "link").symlink_to(tmp_path)
    response = admin_client.post(ADD_URL, form(tmp_path / "link"))
    assert f"enter the directory it points to ({tmp_path})" in errors(response)["root"][0]


@pytest.mark.django_db
def test_the_data_directory_itself_is_rejected(admin_client, settings):
    response = admin_client.post(ADD_URL, form(settings.DATA_DIR))
    assert "contains glmadmin's own files" in errors(response)["root"][0]


@pytest.mark.django_db
def test_log_policies_need_absolute_patterns_and_write_the_writers_config(admin_client, settings,
                                                                          django_capture_on_commit_callbacks):
    data = {"name": "app", "patterns": "logs/*.log", "enabled": "on", "max_file_size": "50M", "keep": "5",
            "compress": "on"}
    response = admin_client.post(LOG_ADD_URL, data)
    assert "use an absolute path pattern" in errors(response)["patterns"][0]
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(LOG_ADD_URL, {**data, "patterns": "/var/log/app/*.log", "max_file_size": "10M"})
    assert response.status_code == 302 and LogPolicy.objects.get(name="app").max_bytes == 10 * 1024**2
    assert '"/var/log/app/*.log"' in (settings.DATA_DIR / "log-policies.json").read_text()
